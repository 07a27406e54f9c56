"""`WindowReducer`: the system messages plus the newest whole groups that fit a budget.

`MessageCountReducer` and `TokenBudgetReducer` differ only in what a message costs and in the
budget; the window, the tail reads and the over-budget warning are this one class.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from memweave.messages import ChatMessage
from memweave.reducers._groups import SystemIndex, Window, as_message_list, select_window
from memweave.reducers.base import ChatReducer

__all__ = ["WindowReducer"]


class WindowReducer(ChatReducer):
    """Keeps every system message (with `keep_system`) and the newest whole groups within
    `_budget()`, starting on a user message (with `start_on_user`) when the kept part holds one.

    Subclasses say what a message costs (`_cost`), what the whole window may cost (`_budget`),
    what it costs whatever it holds (`_fixed_cost`), and how to word the warning logged when
    the newest group alone is over budget and is kept anyway.
    """

    def __init__(self, *, keep_system: bool, start_on_user: bool) -> None:
        self.keep_system = bool(keep_system)
        self.start_on_user = bool(start_on_user)
        self._system_index = SystemIndex()

    @abstractmethod
    def _budget(self) -> int:
        """What the kept window may cost, fixed cost included."""

    @abstractmethod
    def _cost(self, message: ChatMessage) -> int:
        """What keeping `message` costs."""

    def _fixed_cost(self) -> int:
        """What any window costs on top of its messages."""
        return 0

    @abstractmethod
    def _log_over_budget(self, cost: int) -> None:
        """Warn that the newest group alone costs `cost`, over the budget, and is kept."""

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Return the system messages and the newest whole groups that fit the budget.

        An empty history gives an empty list. The input is not modified, and kept messages
        are the same objects.

        Raises:
            InvalidMessage: An item looked at is not a `ChatMessage`.
        """
        return self._reduced(as_message_list(messages), (), self._system_index).messages

    async def reduce_tail(
        self, system: Sequence[ChatMessage], tail: Sequence[ChatMessage]
    ) -> list[ChatMessage] | None:
        """Reduce from the older system messages and the newest messages, when they suffice.

        Returns what `reduce` returns on the whole history, or `None` when the budget is not
        filled before the start of `tail` (older messages could belong in the window).

        Raises:
            InvalidMessage: An item looked at is not a `ChatMessage`.
        """
        window = self._reduced(
            as_message_list(tail), as_message_list(system), SystemIndex(), tail=True
        )
        return window.messages if window.final else None

    def _reduced(
        self,
        messages: list[ChatMessage],
        older_systems: Sequence[ChatMessage],
        index: SystemIndex,
        *,
        tail: bool = False,
    ) -> Window:
        fixed = self._fixed_cost()
        window = select_window(
            messages,
            budget=self._budget() - fixed,
            cost=self._cost,
            keep_system=self.keep_system,
            start_on_user=self.start_on_user,
            system_index=index,
            older_systems=older_systems if self.keep_system else (),
        )
        # A tail too short to decide is reduced again from more messages; warn on the answer.
        if window.over_budget and (window.final or not tail):
            self._log_over_budget(window.cost + fixed)
        return window
