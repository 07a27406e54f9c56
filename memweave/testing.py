"""Helpers for testing code built on memweave: `ScriptedChatClient`, a model that follows a script.

These are real implementations of memweave's protocols, not mocks: deterministic, with no
network and no pytest dependency, so they work in any test runner.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from memweave.errors import InvalidArgument, MemweaveError
from memweave.llm import ChatChunk, ChatResponse, ToolSpec, chunks_of, tools_to_openai
from memweave.messages import ChatMessage, validate_messages

__all__ = ["RecordedRequest", "Reply", "ReplyFunction", "ScriptExhausted", "ScriptedChatClient"]

Reply: TypeAlias = str | ChatMessage | ChatResponse
"""One scripted answer: a text, an assistant `ChatMessage`, or a full `ChatResponse`."""

ReplyFunction: TypeAlias = Callable[
    [list[ChatMessage], list[dict[str, Any]] | None, dict[str, Any]],
    Reply | Awaitable[Reply],
]
"""A sync or async function of `(messages, tools, options)` that returns the reply."""


class ScriptExhausted(MemweaveError, RuntimeError):
    """A `ScriptedChatClient` was asked for more replies than its script holds.

    Attributes:
        scripted: How many replies the script held.
    """

    def __init__(self, scripted: int):
        self.scripted = scripted
        super().__init__(
            f"ScriptedChatClient was called {scripted + 1} times but scripts only {scripted} "
            "replies; add replies to the script or pass a function"
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a `ScriptedChatClient` received."""

    messages: tuple[ChatMessage, ...]
    """The messages sent, oldest first."""
    tools: tuple[dict[str, Any], ...] | None
    """The tools offered, as OpenAI function-tool dicts, or `None` when none were."""
    options: Mapping[str, Any]
    """The other keyword options (`temperature`, ...), read-only."""

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered, in order."""
        return [str(tool["function"]["name"]) for tool in self.tools or ()]


def _to_response(reply: object, model: str) -> ChatResponse:
    if isinstance(reply, ChatResponse):
        return reply
    if isinstance(reply, str):
        return ChatResponse(message=ChatMessage.assistant(reply), model=model)
    if isinstance(reply, ChatMessage):
        if reply.role != "assistant":
            raise InvalidArgument("reply", reply, "a scripted reply must be an assistant message")
        return ChatResponse(message=reply, model=model)
    raise InvalidArgument("reply", reply, "expected a str, ChatMessage or ChatResponse")


class ScriptedChatClient:
    """A `ChatClient` that answers from a script and records every request it gets.

    Give it a list of replies, answered in order, or a sync or async function that builds
    each reply from the request. Text replies become assistant messages; a `ChatMessage`
    reply (e.g. one with `tool_calls`) or a `ChatResponse` is returned as given. Usage is
    zero unless a `ChatResponse` says otherwise. Asking for more replies than a list holds
    raises `ScriptExhausted`.

    It also streams (`StreamingChatClient`): `stream` takes the next reply just as `complete`
    does (and records the request the same way), then yields its text and each tool call's
    arguments in pieces of `chunk_size` characters, and finally the very `ChatResponse`
    `complete` would have returned, so a streamed run stores exactly what a plain one does.

    Args:
        replies: The replies in order, or a function of `(messages, tools, options)`.
        model: The model name reported in each `ChatResponse`.
        chunk_size: How many characters each streamed fragment holds.
        chunk_delay: Seconds to wait before each streamed chunk, to play a slow model (for
            tests of cancellation and timeouts). With 0 the stream still lets other tasks
            run between chunks.

    Example:
        ```python
        from memweave.testing import ScriptedChatClient

        client = ScriptedChatClient(["Paris.", "Berlin."])
        reply = await client.complete([ChatMessage.user("Capital of France?")])
        assert reply.message.text == "Paris."
        assert client.requests[0].messages[-1].text == "Capital of France?"

        echo = ScriptedChatClient(lambda messages, tools, options: messages[-1].text.upper())
        assert (await echo.complete([ChatMessage.user("hi")])).message.text == "HI"
        ```
    """

    # Keeps pytest from collecting this class when a test module imports it.
    __test__ = False

    def __init__(
        self,
        replies: Iterable[Reply] | ReplyFunction,
        *,
        model: str = "scripted",
        chunk_size: int = 4,
        chunk_delay: float = 0.0,
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidArgument("chunk_size", chunk_size, "must be a positive int")
        if (
            isinstance(chunk_delay, bool)
            or not isinstance(chunk_delay, int | float)
            or not chunk_delay >= 0
        ):
            raise InvalidArgument("chunk_delay", chunk_delay, "must be a number of seconds >= 0")
        self.model = model
        self.chunk_size = chunk_size
        """How many characters each streamed fragment holds."""
        self.chunk_delay = float(chunk_delay)
        """Seconds waited before each streamed chunk."""
        self.requests: list[RecordedRequest] = []
        """Every request received, oldest first."""
        self._function: ReplyFunction | None = None
        self._script: list[ChatResponse] = []
        if callable(replies):
            self._function = replies
        elif isinstance(replies, str | ChatMessage | ChatResponse):
            raise InvalidArgument("replies", replies, "expected a list of replies or a function")
        else:
            self._script = [_to_response(reply, model) for reply in replies]

    @property
    def remaining(self) -> int | None:
        """Scripted replies not yet given, or `None` when replies come from a function."""
        return None if self._function is not None else len(self._script) - len(self.requests)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> ChatResponse:
        """Record the request and return the next scripted reply.

        Raises:
            ScriptExhausted: The list of replies is used up.
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            InvalidArgument: A tool is malformed, or the function returned something that is
                not a reply.
        """
        return await self._answer(messages, tools, options)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Record the request and stream the next scripted reply in `chunk_size` pieces,
        ending with the `ResponseChunk` that holds the reply itself.

        Raises:
            ScriptExhausted: The list of replies is used up.
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            InvalidArgument: A tool is malformed, or the function returned something that is
                not a reply.
        """
        response = await self._answer(messages, tools, options)
        for chunk in chunks_of(response, size=self.chunk_size):
            await asyncio.sleep(self.chunk_delay)
            yield chunk

    async def _answer(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None,
        options: dict[str, Any],
    ) -> ChatResponse:
        batch = validate_messages(messages)
        converted = tools_to_openai(tools)
        request = RecordedRequest(
            messages=tuple(batch),
            tools=tuple(converted) if converted is not None else None,
            options=MappingProxyType(dict(options)),
        )
        if self._function is None:
            if len(self.requests) >= len(self._script):
                raise ScriptExhausted(len(self._script))
            self.requests.append(request)
            return self._script[len(self.requests) - 1]
        self.requests.append(request)
        reply = self._function(list(batch), converted, dict(options))
        if inspect.isawaitable(reply):
            reply = await reply
        return _to_response(reply, self.model)
