"""`MessageCountReducer`: keep the newest messages up to a message count."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from memweave.errors import ConfigurationError
from memweave.messages import ChatMessage
from memweave.reducers._groups import SystemIndex, Window, as_message_list, select_window
from memweave.reducers.base import ChatReducer

__all__ = ["MessageCountReducer"]

logger = logging.getLogger(__name__)


def _one(message: ChatMessage) -> int:
    return 1


class MessageCountReducer(ChatReducer):
    """Keeps at most `max_messages` messages: the system messages and the newest whole groups.

    A group is an assistant message with tool calls plus all its tool results, or any other
    single message, and is kept or dropped whole, so a tool result never outlives its call.
    System messages (with `keep_system`) come first and count towards `max_messages`. The
    newest group is always kept, even when it alone holds more messages (a warning is logged).
    With `start_on_user` the kept part starts on its oldest user message when it holds one.

    Args:
        max_messages: The most messages to keep, system messages included.
        keep_system: Keep every system message; `False` treats them like the others.
        start_on_user: Start the kept part on a user message when it holds one.

    Raises:
        ConfigurationError: `max_messages` is not a positive int.

    Example:
        ```python
        reducer = MessageCountReducer(20)
        window = await reducer.reduce(history)
        assert len(window) <= 20
        ```
    """

    def __init__(
        self, max_messages: int, *, keep_system: bool = True, start_on_user: bool = True
    ) -> None:
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ConfigurationError(f"max_messages must be a positive int, got {max_messages!r}")
        self.max_messages = max_messages
        self.keep_system = bool(keep_system)
        self.start_on_user = bool(start_on_user)
        self._system_index = SystemIndex()

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Return the system messages and the newest whole groups, at most `max_messages` in all.

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

        Returns what `reduce` returns on the whole history, or `None` when the window reaches
        the start of `tail` (older messages could belong in it).

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
        window = select_window(
            messages,
            budget=self.max_messages,
            cost=_one,
            keep_system=self.keep_system,
            start_on_user=self.start_on_user,
            system_index=index,
            older_systems=older_systems if self.keep_system else (),
        )
        # A tail too short to decide is reduced again from more messages; warn on the answer.
        if window.over_budget and (window.final or not tail):
            logger.warning(
                "the newest message group alone holds more than max_messages=%d messages "
                "(%d with system messages); keeping it anyway",
                self.max_messages,
                window.cost,
            )
        return window

    def __repr__(self) -> str:
        return (
            f"MessageCountReducer(max_messages={self.max_messages}, "
            f"keep_system={self.keep_system}, start_on_user={self.start_on_user})"
        )
