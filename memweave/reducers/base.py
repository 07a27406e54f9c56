"""`ChatReducer`: the interface of every policy that shrinks a history to fit a budget."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from memweave.messages import ChatMessage

__all__ = ["ChatReducer"]


class ChatReducer(ABC):
    """Shrinks a list of messages to what should be sent to a model or kept in storage.

    Implementations are pure: `reduce` never mutates its input, and the same input gives the
    same output.
    """

    @abstractmethod
    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Return the reduced history, oldest first.

        Args:
            messages: The full history, oldest first. It is not modified.
        """

    async def reduce_tail(
        self, system: Sequence[ChatMessage], tail: Sequence[ChatMessage]
    ) -> list[ChatMessage] | None:
        """Reduce from every system message plus only the newest messages, when that suffices.

        History backends call this to read a long session page by page from its end: it must
        return exactly what `reduce` would return on the whole history, or `None` when older
        messages than `tail` could change the result (the caller then reads further back).
        The default returns `None`, so reducers that need the whole history always get it.

        Args:
            system: Every system message of the history that is older than `tail`, oldest first.
            tail: The newest messages of the history, oldest first.
        """
        return None
