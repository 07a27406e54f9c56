"""`MessageCountReducer`: keep the newest messages up to a message count."""

from __future__ import annotations

import logging

from memweave.errors import ConfigurationError
from memweave.messages import ChatMessage
from memweave.reducers._window import WindowReducer

__all__ = ["MessageCountReducer"]

logger = logging.getLogger(__name__)


class MessageCountReducer(WindowReducer):
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
        super().__init__(keep_system=keep_system, start_on_user=start_on_user)
        self.max_messages = max_messages

    def _budget(self) -> int:
        return self.max_messages

    def _cost(self, message: ChatMessage) -> int:
        return 1

    def _log_over_budget(self, cost: int) -> None:
        logger.warning(
            "the newest message group alone holds more than max_messages=%d messages "
            "(%d with system messages); keeping it anyway",
            self.max_messages,
            cost,
        )

    def __repr__(self) -> str:
        return (
            f"MessageCountReducer(max_messages={self.max_messages}, "
            f"keep_system={self.keep_system}, start_on_user={self.start_on_user})"
        )
