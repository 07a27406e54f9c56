"""Chat models: the `ChatClient` protocol, `ChatResponse` and `Usage`, and `OpenAIChatClient`.

Reducers, memory extraction and agents all call models through `ChatClient`, so any client
with a matching `complete` method plugs in. `OpenAIChatClient` speaks to OpenAI or any
OpenAI-compatible server through the `openai` SDK (extra `openai`); `memweave.testing` has a
scripted client for tests.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from memweave._openai import OpenAIModelClient
from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage, ModelError
from memweave.messages import ChatMessage, validate_messages

if TYPE_CHECKING:
    import openai

__all__ = [
    "ChatClient",
    "ChatResponse",
    "OpenAIChatClient",
    "SupportsOpenAITool",
    "ToolSpec",
    "Usage",
    "tool_to_openai",
    "tools_to_openai",
]


class Usage(BaseModel):
    """Tokens a model call consumed, as the server reported them.

    Usages add up: `total = first.usage + second.usage`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = Field(default=0, ge=0)
    """Tokens in the request (messages, tools and formatting)."""
    completion_tokens: int = Field(default=0, ge=0)
    """Tokens the model generated."""

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ChatResponse(BaseModel):
    """What a chat model answered to one request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: ChatMessage
    """The reply, an `assistant` message; its `tool_calls` hold any calls the model asked for."""
    usage: Usage = Usage()
    """Tokens the call consumed; zeros when the server did not say."""
    model: str | None = None
    """The model that answered, as the server named it, when known."""


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
    fails, never the driver's own exceptions.
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
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty str, got {model!r}")
        super().__init__(model, client=client, base_url=base_url, api_key=api_key)

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
                `stream` is not supported.

        Raises:
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            InvalidArgument: A tool or an option is not accepted.
            ModelHTTPError: The server answered with an error status.
            ModelError: The server could not be reached, timed out, or answered nonsense.
        """
        batch = validate_messages(messages)
        if not batch:
            raise InvalidArgument("messages", messages, "at least one message is required")
        unknown = sorted(set(options) - _allowed_options())
        if unknown:
            why = "is not supported" if unknown[0] in _RESERVED_OPTIONS else "is not a known option"
            raise InvalidArgument(unknown[0], options[unknown[0]], f"{why} of chat completions")
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in batch],
        }
        converted = tools_to_openai(tools)
        if converted is not None:
            request["tools"] = converted
        request.update(options)
        with self._map_errors():
            completion = await self._client.chat.completions.create(**request)
        return self._parse(completion)

    def _parse(self, completion: Any) -> ChatResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(f"model {self.model!r} answered with no choices")
        reply = choices[0].message
        calls = []
        for call in reply.tool_calls or ():
            if getattr(call, "type", "function") != "function":
                raise ModelError(
                    f"model {self.model!r} asked for a {call.type!r} tool call; "
                    "only function tools are supported"
                )
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
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
        return ChatResponse(message=message, usage=usage, model=completion.model or None)
