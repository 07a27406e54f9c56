"""Chat models: the `ChatClient` protocol, `ChatResponse` and `Usage`, and `OpenAIChatClient`.

Reducers, memory extraction and agents all call models through `ChatClient`, so any client
with a matching `complete` method plugs in. A client that can also stream tokens implements
`StreamingChatClient.stream`; `stream_chat` streams from any client, falling back to one
`complete` call for a client without `stream`. `OpenAIChatClient` speaks to OpenAI or any
OpenAI-compatible server through the `openai` SDK (extra `openai`); `memweave.testing` has a
scripted client for tests.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from memweave._openai import OpenAIModelClient
from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage, ModelError
from memweave.messages import ChatMessage, validate_messages

if TYPE_CHECKING:
    import openai

__all__ = [
    "ChatChunk",
    "ChatClient",
    "ChatResponse",
    "OpenAIChatClient",
    "ResponseChunk",
    "StreamingChatClient",
    "SupportsOpenAITool",
    "TextChunk",
    "TokenPrices",
    "ToolCallChunk",
    "ToolSpec",
    "Usage",
    "chunks_of",
    "stream_chat",
    "tool_to_openai",
    "tools_to_openai",
]


class Usage(BaseModel):
    """Tokens a model call consumed, as the server reported them, and their cost when known.

    Usages add up: `total = first.usage + second.usage`. A sum's `cost` is the sum of the
    costs that are known (None only when none is).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = Field(default=0, ge=0)
    """Tokens in the request (messages, tools and formatting)."""
    completion_tokens: int = Field(default=0, ge=0)
    """Tokens the model generated."""
    cost: float | None = Field(default=None, ge=0)
    """What the call cost, in the unit of the client's `TokenPrices` (or as a client reported
    it); None when the client knows no prices."""

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        cost = None
        if self.cost is not None or other.cost is not None:
            cost = (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=cost,
        )


class TokenPrices(BaseModel):
    """What a model charges per token, so a client can fill in `Usage.cost`.

    The unit is yours (dollars, cents, credits); costs come out in it. Vendors list prices
    per million tokens: `TokenPrices.per_million(0.15, 0.60)`.

    Example:
        ```python
        client = OpenAIChatClient("gpt-4o-mini", prices=TokenPrices.per_million(0.15, 0.60))
        reply = await client.complete([ChatMessage.user("hi")])
        print(reply.usage.cost)
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: float = Field(ge=0)
    """The price of one prompt (input) token."""
    completion: float = Field(ge=0)
    """The price of one completion (output) token."""

    @classmethod
    def per_million(cls, prompt: float, completion: float) -> TokenPrices:
        """Build prices from prices per million prompt and completion tokens."""
        return cls(prompt=prompt / 1_000_000, completion=completion / 1_000_000)

    def price(self, usage: Usage) -> Usage:
        """Return `usage` with its `cost` worked out from its token counts."""
        cost = usage.prompt_tokens * self.prompt + usage.completion_tokens * self.completion
        return usage.model_copy(update={"cost": cost})


class ChatResponse(BaseModel):
    """What a chat model answered to one request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: ChatMessage
    """The reply, an `assistant` message; its `tool_calls` hold any calls the model asked for."""
    usage: Usage = Usage()
    """Tokens the call consumed; zeros when the server did not say."""
    model: str | None = None
    """The model that answered, as the server named it, when known."""


class TextChunk(BaseModel):
    """A fragment of a streamed reply's text, in the order the model wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["text"] = "text"
    """Marks a text fragment."""
    text: str
    """The new text; the reply's text is every fragment joined in order."""


class ToolCallChunk(BaseModel):
    """A fragment of one tool call of a streamed reply: the call's id and name when they first
    arrive, then pieces of its arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["tool_call"] = "tool_call"
    """Marks a tool-call fragment."""
    index: int = Field(ge=0)
    """Which call of the reply the fragment belongs to (0 for the first)."""
    id: str | None = None
    """The call's id, on the fragment that first carries it."""
    name: str | None = None
    """The function's name, on the fragment that first carries it."""
    arguments: str = ""
    """The next piece of the arguments' JSON text."""


class ResponseChunk(BaseModel):
    """The end of a stream: the whole reply, assembled, exactly as `complete` returns it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["response"] = "response"
    """Marks the final chunk."""
    response: ChatResponse
    """The reply with its usage and model; the fragments before it add up to its message."""


ChatChunk: TypeAlias = Annotated[
    TextChunk | ToolCallChunk | ResponseChunk, Field(discriminator="kind")
]
"""One item of a streamed reply. A stream is fragments (`TextChunk`, `ToolCallChunk`) followed by
exactly one `ResponseChunk`, always last."""


@runtime_checkable
class SupportsOpenAITool(Protocol):
    """A tool object that can describe itself as an OpenAI function tool."""

    def to_openai(self) -> dict[str, Any]:
        """Return the tool as `{"type": "function", "function": {"name": ..., ...}}`."""
        ...


ToolSpec: TypeAlias = Mapping[str, Any] | SupportsOpenAITool
"""A tool definition: an OpenAI function-tool dict, or an object with `to_openai()`."""


class ChatClient(Protocol):
    """Anything that answers a list of chat messages with one reply.

    Implementations raise `ModelError` (or its subclass `ModelHTTPError`) when the call
    fails, never the driver's own exceptions. Streaming is optional: a client that can stream
    also has `stream` (see `StreamingChatClient`); one without it still works everywhere,
    `Agent.run_stream` included, with its whole reply arriving as one fragment.
    """

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> ChatResponse:
        """Send `messages` to the model and return its reply.

        Args:
            messages: The conversation, oldest first.
            tools: Tools the model may call, as OpenAI function tools (see `tool_to_openai`).
            **options: Model options such as `temperature` or `max_tokens`.

        Raises:
            ModelError: The call failed.
        """
        ...


@runtime_checkable
class StreamingChatClient(ChatClient, Protocol):
    """A `ChatClient` that can also stream its reply as it is generated.

    `stream` is optional for a `ChatClient`: `Agent.run_stream` and `stream_chat` use it when a
    client has it and otherwise get the whole reply from `complete` as a single fragment.
    """

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Send `messages` to the model and yield its reply as it arrives.

        Usually an `async def` generator. It yields `TextChunk`s and `ToolCallChunk`s, then one
        `ResponseChunk` holding the assembled `ChatResponse`, the same `complete` would return
        for the same reply. Closing the iterator early (`aclose()`) ends the request.

        Args:
            messages: The conversation, oldest first.
            tools: Tools the model may call, as OpenAI function tools.
            **options: Model options such as `temperature`.

        Raises:
            ModelError: The call failed, before or during the stream.
        """
        ...


def chunks_of(response: ChatResponse, *, size: int | None = None) -> list[ChatChunk]:
    """Return the chunks that stream `response`: its text, then each tool call, then the
    `ResponseChunk` carrying `response` itself.

    Args:
        response: The whole reply.
        size: Split the text and each call's arguments into pieces of this many characters;
            `None` sends each whole.

    Raises:
        InvalidArgument: `size` is not a positive int.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidArgument("size", size, "must be a positive int or None")

    def pieces(text: str) -> list[str]:
        if size is None or len(text) <= size:
            return [text] if text else []
        return [text[start : start + size] for start in range(0, len(text), size)]

    out: list[ChatChunk] = [TextChunk(text=piece) for piece in pieces(response.message.text)]
    for index, call in enumerate(response.message.tool_calls):
        out.append(ToolCallChunk(index=index, id=call.id, name=call.name))
        out.extend(ToolCallChunk(index=index, arguments=piece) for piece in pieces(call.arguments))
    out.append(ResponseChunk(response=response))
    return out


async def stream_chat(
    client: ChatClient,
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[ToolSpec] | None = None,
    **options: Any,
) -> AsyncGenerator[ChatChunk, None]:
    """Stream a reply from any `ChatClient`, ending with exactly one `ResponseChunk`.

    A `StreamingChatClient` streams; a client with only `complete` is called once and its reply
    is yielded whole (its text as one `TextChunk`, each tool call as one `ToolCallChunk`), so
    every client works with `Agent.run_stream`. The iteration stops at the `ResponseChunk`, and
    the client's stream is closed when the caller stops early.

    Raises:
        ModelError: The call failed, the client returned something that is not a
            `ChatResponse`, or its stream yielded a foreign item or ended without a
            `ResponseChunk`.
    """
    if not isinstance(client, StreamingChatClient):
        response = await client.complete(messages, tools=tools, **options)
        if not isinstance(response, ChatResponse):
            raise ModelError(f"client {client!r} returned {response!r}, not a ChatResponse")
        for chunk in chunks_of(response):
            yield chunk
        return
    source = client.stream(messages, tools=tools, **options)
    try:
        async for chunk in source:
            if not isinstance(chunk, TextChunk | ToolCallChunk | ResponseChunk):
                raise ModelError(f"client {client!r} streamed {chunk!r}, not a ChatChunk")
            yield chunk
            if isinstance(chunk, ResponseChunk):
                return
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
    raise ModelError(f"the stream of client {client!r} ended without its final ResponseChunk")


def tool_to_openai(tool: ToolSpec) -> dict[str, Any]:
    """Return `tool` as an OpenAI function-tool dict, checking its shape.

    Args:
        tool: A dict such as `{"type": "function", "function": {"name": "search",
            "parameters": {...}}}`, or an object whose `to_openai()` returns one.

    Raises:
        InvalidArgument: The tool is neither, or has no function name.
    """
    if isinstance(tool, Mapping):
        data = dict(tool)
    elif isinstance(tool, SupportsOpenAITool):
        data = tool.to_openai()
        if not isinstance(data, Mapping):
            raise InvalidArgument("tools", tool, "to_openai() must return a dict")
        data = dict(data)
    else:
        raise InvalidArgument(
            "tools", tool, "expected an OpenAI tool dict or an object with to_openai()"
        )
    function = data.get("function")
    if data.get("type") != "function" or not isinstance(function, Mapping):
        raise InvalidArgument(
            "tools", tool, 'expected {"type": "function", "function": {"name": ..., ...}}'
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("tools", tool, "the function needs a non-empty string 'name'")
    return data


def tools_to_openai(tools: Sequence[ToolSpec] | None) -> list[dict[str, Any]] | None:
    """Convert every tool with `tool_to_openai`; `None` or an empty list gives `None`."""
    if tools is None:
        return None
    if isinstance(tools, Mapping | str | bytes | SupportsOpenAITool):
        raise InvalidArgument("tools", tools, "expected a sequence of tools")
    converted = [tool_to_openai(tool) for tool in tools]
    return converted or None


# -- OpenAI ------------------------------------------------------------------------------------

_RESERVED_OPTIONS = frozenset({"messages", "model", "tools", "stream", "stream_options"})


@functools.cache
def _allowed_options() -> frozenset[str]:
    from openai.resources.chat.completions import AsyncCompletions

    names = set(inspect.signature(AsyncCompletions.create).parameters) - {"self"}
    return frozenset(names - _RESERVED_OPTIONS)


class OpenAIChatClient(OpenAIModelClient):
    """`ChatClient` on the `openai` SDK: OpenAI or any OpenAI-compatible chat-completions server.

    Messages go out in the OpenAI format (`ChatMessage.to_openai()`), tools as function tools,
    and tool calls in the reply come back as `ToolCall`s. Server errors become
    `ModelHTTPError` with the status code; unreachable servers and timeouts become
    `ModelError`. A client built here is closed by `aclose()`; one passed in is left open.

    Args:
        model: The model name sent with every request, e.g. `"gpt-4o"`.
        client: An `openai.AsyncOpenAI` to use instead of building one.
        base_url: The server's base URL (e.g. `"http://localhost:11434/v1"`); only without
            `client`. Defaults to the SDK's (`OPENAI_BASE_URL` or api.openai.com).
        api_key: The API key; only without `client`. Defaults to `OPENAI_API_KEY`.
        prices: The model's token prices; with them every reply's `Usage.cost` is filled in.

    Raises:
        MissingDependency: `openai` is not installed (`pip install 'memweave[openai]'`).
        ConfigurationError: Bad options, or no API key was given or found.

    Example:
        ```python
        client = OpenAIChatClient("gpt-4o-mini")
        reply = await client.complete([ChatMessage.user("Say hi")], temperature=0)
        print(reply.message.text, reply.usage.total_tokens)
        ```
    """

    _server = "model server"
    _failed_call = "call to"

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        prices: TokenPrices | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty str, got {model!r}")
        if prices is not None and not isinstance(prices, TokenPrices):
            raise ConfigurationError(f"prices must be TokenPrices or None, got {prices!r}")
        super().__init__(model, client=client, base_url=base_url, api_key=api_key)
        self.prices = prices
        """The token prices `Usage.cost` is worked out with (None: costs stay unknown)."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> ChatResponse:
        """Send `messages` (and `tools`) to the model and return its reply.

        Args:
            messages: The conversation, oldest first.
            tools: Function tools the model may call.
            **options: Any other chat-completions parameter the SDK accepts (`temperature`,
                `max_tokens`, `tool_choice`, `response_format`, `extra_body`, ...).
                `stream` and `stream_options` are refused here: call `stream` to stream.

        Raises:
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            InvalidArgument: A tool or an option is not accepted.
            ModelHTTPError: The server answered with an error status.
            ModelError: The server could not be reached, timed out, or answered nonsense.
        """
        request = self._request(messages, tools, options, streaming=False)
        with self._map_errors():
            completion = await self._client.chat.completions.create(**request)
        return self._parse(completion)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Send `messages` with `stream=True` and yield the reply as the server sends it.

        Text deltas become `TextChunk`s and tool-call deltas `ToolCallChunk`s (by the index the
        server gives them); the SDK's own `ChatCompletionStreamState` assembles the deltas, so
        the final `ResponseChunk` holds the reply `complete` would have returned. Usage is asked
        for with `stream_options={"include_usage": True}` (merged under any `stream_options`
        you pass). Closing the iterator early closes the HTTP response.

        Args:
            messages: The conversation, oldest first.
            tools: Function tools the model may call.
            **options: As for `complete`, plus `stream_options`.

        Raises:
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            InvalidArgument: A tool or an option is not accepted.
            ModelHTTPError: The server answered with an error status.
            ModelError: The server could not be reached, timed out, broke off or answered
                nonsense.
        """
        from openai.lib.streaming.chat import ChatCompletionStreamState

        request = self._request(messages, tools, options, streaming=True)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True, **options.get("stream_options", {})}
        with self._map_errors():
            response = await self._client.chat.completions.create(**request)
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
        seen = False
        try:
            iterator = aiter(response)
            while True:
                with self._map_errors():
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
                # Azure's asynchronous content filter interleaves events that are not chunks;
                # the SDK's own stream helper skips them the same way.
                if getattr(chunk, "object", None) != "chat.completion.chunk":
                    continue
                state.handle_chunk(chunk)
                seen = True
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        yield TextChunk(text=choice.delta.content)
                    for call in choice.delta.tool_calls or ():
                        function = call.function
                        yield ToolCallChunk(
                            index=call.index,
                            id=call.id or None,
                            name=(function.name or None) if function is not None else None,
                            arguments=(function.arguments or "") if function is not None else "",
                        )
        finally:
            with self._map_errors():
                await response.close()
        if not seen:
            raise ModelError(f"model {self.model!r} answered with an empty stream")
        # The accumulated snapshot, not get_final_completion(): that one raises on a
        # "length" or "content_filter" finish, where complete() returns the reply as it is.
        yield ResponseChunk(response=self._parse(state.current_completion_snapshot))

    def _request(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None,
        options: dict[str, Any],
        *,
        streaming: bool,
    ) -> dict[str, Any]:
        """Validate a call's arguments and build the SDK request (without streaming flags)."""
        batch = validate_messages(messages)
        if not batch:
            raise InvalidArgument("messages", messages, "at least one message is required")
        allowed = _allowed_options() | ({"stream_options"} if streaming else frozenset())
        unknown = sorted(set(options) - allowed)
        if unknown:
            name = unknown[0]
            if name in ("stream", "stream_options"):
                why = "is not an option of complete(); call stream() to stream the reply"
                if streaming:
                    why = "is set by stream() itself"
            elif name in _RESERVED_OPTIONS:
                why = "is set by memweave, not by an option"
            else:
                why = "is not a known option of chat completions"
            raise InvalidArgument(name, options[name], why)
        stream_options = options.get("stream_options", {})
        if not isinstance(stream_options, Mapping):
            raise InvalidArgument("stream_options", stream_options, "must be a dict")
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in batch],
        }
        converted = tools_to_openai(tools)
        if converted is not None:
            request["tools"] = converted
        request.update((key, value) for key, value in options.items() if key != "stream_options")
        return request

    def _parse(self, completion: Any) -> ChatResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(f"model {self.model!r} answered with no choices")
        reply = choices[0].message
        calls = []
        for call in reply.tool_calls or ():
            # A streamed call may leave `type` unset; chat completions only stream functions.
            if (getattr(call, "type", None) or "function") != "function":
                raise ModelError(
                    f"model {self.model!r} asked for a {call.type!r} tool call; "
                    "only function tools are supported"
                )
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": call.function.arguments or "",
                    },
                }
            )
        data = {"role": "assistant", "content": reply.content or "", "tool_calls": calls}
        if reply.refusal is not None:
            data["refusal"] = reply.refusal
        try:
            message = ChatMessage.from_openai(data)
        except InvalidMessage as exc:
            raise ModelError(
                f"model {self.model!r} answered with an invalid message: {exc}"
            ) from exc
        usage = Usage()
        if completion.usage is not None:
            usage = Usage(
                prompt_tokens=completion.usage.prompt_tokens or 0,
                completion_tokens=completion.usage.completion_tokens or 0,
            )
        if self.prices is not None:
            usage = self.prices.price(usage)
        return ChatResponse(message=message, usage=usage, model=completion.model or None)
