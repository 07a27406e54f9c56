"""What a streamed agent turn yields: the `AgentEvent` models, and `AgentStream`, the object
`Agent.run_stream` returns."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Annotated, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from memweave.llm import Usage
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import AgentResponse

__all__ = [
    "AgentEvent",
    "AgentStream",
    "EventSink",
    "ReplyEvent",
    "ResponseEvent",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEvent",
    "ToolResultEvent",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    """The agent whose turn produced the event."""
    session_id: str
    """The session that turn is stored under (for an agent called as a tool, its sub-session)."""


class TextDelta(_Event):
    """A fragment of the text the model is writing, as it arrives."""

    kind: Literal["text_delta"] = "text_delta"
    """Marks a text fragment."""
    text: str
    """The new text; the fragments of one model call add up to its reply's text."""


class ToolCallDelta(_Event):
    """A fragment of a tool call the model is writing: its id and name first, then pieces of
    its arguments."""

    kind: Literal["tool_call_delta"] = "tool_call_delta"
    """Marks a tool-call fragment."""
    index: int
    """Which call of the reply the fragment belongs to (0 for the first)."""
    call_id: str | None = None
    """The call's id, on the fragment that first carries it."""
    name: str | None = None
    """The tool's name, on the fragment that first carries it."""
    arguments: str = ""
    """The next piece of the arguments' JSON text."""


class ReplyEvent(_Event):
    """One model call finished: its whole reply, exactly as it is stored."""

    kind: Literal["reply"] = "reply"
    """Marks a complete reply."""
    message: ChatMessage
    """The assistant message, tagged with the agent's name; its `tool_calls` run next."""
    usage: Usage = Usage()
    """Tokens this model call used."""


class ToolCallEvent(_Event):
    """A tool call of the last reply is about to run (one event per call)."""

    kind: Literal["tool_call"] = "tool_call"
    """Marks a tool call."""
    call: ToolCall
    """The call, as the model wrote it."""


class ToolResultEvent(_Event):
    """A tool call finished (calls run concurrently, so results come in the order they end)."""

    kind: Literal["tool_result"] = "tool_result"
    """Marks a tool result."""
    call_id: str
    """The id of the call it answers."""
    message: ChatMessage
    """The tool message, exactly as it is stored; errors are results too (see `TOOL_ERROR_KEY`)."""


class ResponseEvent(_Event):
    """The turn is over and stored: the last event of `Agent.run_stream`."""

    kind: Literal["response"] = "response"
    """Marks the end of the turn."""
    response: AgentResponse
    """What `Agent.run` returns for the same turn."""


AgentEvent: TypeAlias = Annotated[
    TextDelta | ToolCallDelta | ReplyEvent | ToolCallEvent | ToolResultEvent | ResponseEvent,
    Field(discriminator="kind"),
]
"""One event of a streamed agent turn, told apart by `kind` (or `isinstance`)."""

EventSink: TypeAlias = Callable[[AgentEvent], None]
"""A sync callback that takes the events of a nested turn (an agent called as a tool)."""


class AgentStream:
    """The events of one streamed agent turn: iterate it with `async for`, then read `response`.

    Events arrive as the turn makes progress: `TextDelta` and `ToolCallDelta` while the model
    writes, a `ReplyEvent` when a model call is complete, a `ToolCallEvent` per call it asks
    for, a `ToolResultEvent` as each call ends, and, once the turn is stored, one
    `ResponseEvent`, always last. An agent called as a tool streams its own events into its
    caller's stream (with its own `agent` and `session_id`), but not its `ResponseEvent`.

    The turn runs only while the stream is iterated. Stopping early, by `aclose()`, leaving an
    `async with` block, or cancelling the task that iterates, ends the turn the way a failed
    `Agent.run` ends: the input and every complete tool round are stored, a half-written reply
    is not. A stream left without closing it is closed when it is garbage-collected; close it
    (or use `async with`) to have that happen at once.

    Example:
        ```python
        async with agent.run_stream("Weather in Paris?", session="s1") as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
        print(stream.response.text)
        ```
    """

    def __init__(self, events: AsyncGenerator[AgentEvent, None]) -> None:
        self._events = events
        self._response: AgentResponse | None = None

    @property
    def response(self) -> AgentResponse | None:
        """What the turn returned, the same `AgentResponse` `Agent.run` would; `None` until
        the `ResponseEvent` was iterated (or when the stream was stopped early)."""
        return self._response

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> AgentEvent:
        event = await self._events.__anext__()
        if isinstance(event, ResponseEvent):
            self._response = event.response
        return event

    async def aclose(self) -> None:
        """Stop the turn if it is still running (see the class docstring). Idempotent."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "done" if self._response is not None else "open"
        return f"<AgentStream {state}>"
