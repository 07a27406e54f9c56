"""`ContextProvider` and `Context`: what long-term memory adds to a model call, and learns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from memweave._closing import AsyncCloseable
from memweave.messages import ChatMessage
from memweave.session import Session

__all__ = ["Context", "ContextProvider"]


class Context(BaseModel):
    """What a context provider adds to one model call; every part is optional.

    Example:
        ```python
        context = Context(instructions="The user prefers metric units.")
        assert context.messages == () and context.tools == ()
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    instructions: str | None = None
    """Text the agent appends to its system instructions for this call, or None for nothing."""
    messages: tuple[ChatMessage, ...] = ()
    """Messages the agent inserts before the conversation's own for this call."""
    tools: tuple[object, ...] = ()
    """Tool definitions the agent offers the model for this call, in any form the agent
    understands (an OpenAI function-tool dict, or an object with `to_openai()`)."""

    @property
    def is_empty(self) -> bool:
        """True when the context adds nothing."""
        return not self.instructions and not self.messages and not self.tools


class ContextProvider(AsyncCloseable, ABC):
    """Adds context to each model call and learns from its result (long-term memory).

    An agent calls `invoking` before every model call and `invoked` after it. One provider
    serves many sessions; per-session state belongs in `session.state[self.source_id]`, so a
    conversation resumes in another process. `async with provider:` closes it on exit.
    """

    source_id: str = "context"
    """Key of this provider's state in `Session.state`; unique among an agent's providers.
    Instances may override it (`self.source_id = ...`) to run two of one kind side by side."""

    @abstractmethod
    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        """Return the context to add to the model call about to be made.

        Args:
            session: The conversation, with its user id and provider state.
            messages: The messages about to be sent, oldest first (the newest user message
                last, usually).

        Returns:
            The context to add; `Context()` adds nothing.
        """

    async def invoked(
        self,
        session: Session,
        request_messages: Sequence[ChatMessage],
        response_messages: Sequence[ChatMessage],
        error: BaseException | None = None,
    ) -> None:
        """Learn from a finished model call. The default does nothing.

        Args:
            session: The conversation.
            request_messages: The messages that were sent.
            response_messages: The model's reply messages (empty when the call failed).
            error: The exception the call raised, or None when it succeeded.
        """

    async def aclose(self) -> None:
        """Release resources the provider holds. Idempotent; the default does nothing."""
