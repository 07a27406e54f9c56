"""OpenAIChatClient on the real openai SDK over httpx.MockTransport: bodies, replies, errors,
streaming (server-sent events); `stream_chat` and `chunks_of`."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import openai
import pytest

from memweave.errors import (
    ConfigurationError,
    InvalidArgument,
    InvalidMessage,
    MissingDependency,
    ModelError,
    ModelHTTPError,
)
from memweave.llm import (
    ChatChunk,
    ChatClient,
    ChatResponse,
    OpenAIChatClient,
    ResponseChunk,
    StreamingChatClient,
    TextChunk,
    ToolCallChunk,
    Usage,
    chunks_of,
    stream_chat,
    tool_to_openai,
)
from memweave.messages import ChatMessage, ToolCall

Handler = Callable[[httpx.Request], httpx.Response]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def completion(message: dict[str, Any], *, usage: dict[str, int] | None = None) -> dict[str, Any]:
    """A chat.completion body as OpenAI sends it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message, "logprobs": None}],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


class Server:
    """Records requests and answers each with `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the last request."""
        body: dict[str, Any] = json.loads(self.requests[-1].content)
        return body


def make_client(handler: Handler, model: str = "gpt-4o") -> tuple[OpenAIChatClient, Server]:
    server = Server(handler)
    sdk = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="https://llm.test/v1",
        max_retries=0,
        # The SDK types http_client as httpx2's client and accepts httpx's as well.
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),  # type: ignore[arg-type]
    )
    return OpenAIChatClient(model, client=sdk), server


def reply_with(message: dict[str, Any], **kwargs: Any) -> Handler:
    return lambda request: httpx.Response(200, json=completion(message, **kwargs))


def test_openai_client_is_a_chat_client() -> None:
    """OpenAIChatClient satisfies the ChatClient protocol."""
    client: ChatClient = make_client(reply_with({"role": "assistant", "content": "hi"}))[0]
    assert callable(client.complete)


async def test_complete_sends_exact_request_body() -> None:
    """Messages go out in the OpenAI format, with the model and the options."""
    client, server = make_client(reply_with({"role": "assistant", "content": "Hello!"}))
    messages = [
        ChatMessage.system("Be brief."),
        ChatMessage.user("Hi", name="ada", metadata={"private": True}),
    ]
    await client.complete(messages, temperature=0, max_tokens=50)
    request = server.requests[-1]
    assert request.method == "POST"
    assert request.url == "https://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert server.body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi", "name": "ada"},
        ],
        "temperature": 0,
        "max_tokens": 50,
    }


async def test_complete_sends_tools_and_tool_history() -> None:
    """Tools go out as function tools; earlier calls and results in their wire form."""
    client, server = make_client(reply_with({"role": "assistant", "content": "Sunny."}))

    class WeatherTool:
        def to_openai(self) -> dict[str, Any]:
            return WEATHER_TOOL

    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    messages = [
        ChatMessage.user("Weather in Paris?"),
        ChatMessage.assistant(tool_calls=[call]),
        ChatMessage.tool("call_1", '{"sky": "clear"}'),
    ]
    await client.complete(messages, tools=[WeatherTool()], tool_choice="auto")
    assert server.body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "content": '{"sky": "clear"}', "tool_call_id": "call_1"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }


async def test_complete_parses_text_reply_and_usage() -> None:
    """A text reply becomes an assistant message with the usage and model reported."""
    client, _ = make_client(reply_with({"role": "assistant", "content": "Hello!"}))
    response = await client.complete([ChatMessage.user("Hi")])
    assert isinstance(response, ChatResponse)
    assert response.message.role == "assistant"
    assert response.message.text == "Hello!"
    assert response.message.tool_calls == ()
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=5)
    assert response.model == "gpt-4o-2024-08-06"


async def test_complete_parses_parallel_tool_calls() -> None:
    """Tool calls in the reply become ToolCalls, in order, with arguments kept verbatim."""
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
    ]
    client, _ = make_client(reply_with({"role": "assistant", "content": None, "tool_calls": calls}))
    response = await client.complete([ChatMessage.user("Paris and Oslo?")], tools=[WEATHER_TOOL])
    assert response.message.text == ""
    assert response.message.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="call_b", name="get_weather", arguments='{"city": "Oslo"}'),
    )
    assert response.message.to_openai()["tool_calls"] == calls


async def test_complete_parses_refusal() -> None:
    """A refusal in the reply is kept on the message."""
    client, _ = make_client(
        reply_with({"role": "assistant", "content": None, "refusal": "I can't help with that."})
    )
    response = await client.complete([ChatMessage.user("...")])
    assert response.message.refusal == "I can't help with that."


async def test_complete_without_usage_reports_zero() -> None:
    """A server that reports no usage gives Usage() zeros."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = completion({"role": "assistant", "content": "ok"})
        del body["usage"]
        return httpx.Response(200, json=body)

    client, _ = make_client(handler)
    response = await client.complete([ChatMessage.user("hi")])
    assert response.usage == Usage()


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
async def test_http_error_becomes_model_http_error_with_status(status: int) -> None:
    """An error status becomes ModelHTTPError keeping the status code, model and body."""
    error = {"error": {"message": "nope", "type": "invalid_request_error", "code": None}}
    client, _ = make_client(lambda request: httpx.Response(status, json=error))
    with pytest.raises(ModelHTTPError) as caught:
        await client.complete([ChatMessage.user("hi")])
    assert caught.value.status_code == status
    assert caught.value.model == "gpt-4o"
    assert "nope" in str(caught.value.body)
    assert isinstance(caught.value.__cause__, openai.APIStatusError)


async def test_connection_error_becomes_model_error() -> None:
    """An unreachable server becomes a ModelError naming the URL and model."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = make_client(refuse)
    with pytest.raises(ModelError, match="could not reach") as caught:
        await client.complete([ChatMessage.user("hi")])
    assert "llm.test" in str(caught.value)
    assert not isinstance(caught.value, ModelHTTPError)


async def test_timeout_becomes_model_error() -> None:
    """A timeout becomes a ModelError saying so."""

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = make_client(slow)
    with pytest.raises(ModelError, match="timed out"):
        await client.complete([ChatMessage.user("hi")])


async def test_reply_without_choices_is_model_error() -> None:
    """A reply with no choices is a ModelError."""

    def empty(request: httpx.Request) -> httpx.Response:
        body = completion({"role": "assistant", "content": "x"})
        body["choices"] = []
        return httpx.Response(200, json=body)

    client, _ = make_client(empty)
    with pytest.raises(ModelError, match="no choices"):
        await client.complete([ChatMessage.user("hi")])


async def test_unknown_option_is_invalid_argument() -> None:
    """An option chat completions does not take raises InvalidArgument naming it."""
    client, server = make_client(reply_with({"role": "assistant", "content": "x"}))
    with pytest.raises(InvalidArgument, match="temprature"):
        await client.complete([ChatMessage.user("hi")], temprature=0)
    with pytest.raises(InvalidArgument, match="stream"):
        await client.complete([ChatMessage.user("hi")], stream=True)
    assert server.requests == []


async def test_bad_tool_is_invalid_argument() -> None:
    """A tool that is not an OpenAI function tool raises InvalidArgument."""
    client, _ = make_client(reply_with({"role": "assistant", "content": "x"}))
    with pytest.raises(InvalidArgument, match="tools"):
        await client.complete([ChatMessage.user("hi")], tools=[{"name": "f"}])


async def test_bad_messages_are_invalid() -> None:
    """Non-messages raise InvalidMessage; an empty list raises InvalidArgument."""
    client, _ = make_client(reply_with({"role": "assistant", "content": "x"}))
    with pytest.raises(InvalidMessage):
        await client.complete([{"role": "user", "content": "hi"}])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="messages"):
        await client.complete([])


def test_tool_to_openai_accepts_dicts_and_tool_objects() -> None:
    """Dicts pass through; objects are asked for to_openai(); both are checked."""
    assert tool_to_openai(WEATHER_TOOL) == WEATHER_TOOL

    class Tool:
        def to_openai(self) -> dict[str, Any]:
            return {"type": "function", "function": {"name": "noop"}}

    assert tool_to_openai(Tool())["function"]["name"] == "noop"
    with pytest.raises(InvalidArgument):
        tool_to_openai({"type": "function", "function": {"name": ""}})
    with pytest.raises(InvalidArgument):
        tool_to_openai(42)  # type: ignore[arg-type]


def test_usage_adds_up() -> None:
    """Usages add field by field, and total_tokens sums them."""
    total = Usage(prompt_tokens=3, completion_tokens=4) + Usage(prompt_tokens=10)
    assert total == Usage(prompt_tokens=13, completion_tokens=4)
    assert total.total_tokens == 17


def test_client_and_base_url_together_is_configuration_error() -> None:
    """client= carries its own URL and key, so base_url= or api_key= with it is rejected."""
    sdk = openai.AsyncOpenAI(api_key="sk-test")
    with pytest.raises(ConfigurationError, match="not both"):
        OpenAIChatClient("gpt-4o", client=sdk, base_url="http://x/v1")


def test_missing_api_key_is_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key= or OPENAI_API_KEY, construction says what to set."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIChatClient("gpt-4o")


def test_missing_openai_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the openai package, construction raises MissingDependency naming the extra."""
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingDependency, match=r"memweave\[openai\]"):
        OpenAIChatClient("gpt-4o", api_key="sk-test")


async def test_aclose_closes_own_client_only() -> None:
    """aclose() closes a client built here, is idempotent, and leaves a passed-in one open."""
    owned = OpenAIChatClient("gpt-4o", api_key="sk-test", base_url="http://user:secret@x/v1")
    assert "secret" not in repr(owned)
    async with owned:
        pass
    await owned.aclose()
    assert owned._client.is_closed()
    client, _ = make_client(reply_with({"role": "assistant", "content": "x"}))
    await client.aclose()
    assert not client._client.is_closed()


# -- streaming ----------------------------------------------------------------------------------


def chunk_body(delta: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI streams it; `delta=None` gives a chunk without choices."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": choices,
        **fields,
    }


class EventStream(httpx.AsyncByteStream):
    """A server-sent-event body that records whether the client closed it."""

    def __init__(self, events: Sequence[dict[str, Any]], *, done: bool = True) -> None:
        self.lines = [f"data: {json.dumps(event)}\n\n".encode() for event in events]
        if done:
            self.lines.append(b"data: [DONE]\n\n")
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for line in self.lines:
            self.sent += 1
            yield line

    async def aclose(self) -> None:
        self.closed = True


def sse(events: Sequence[dict[str, Any]], *, done: bool = True) -> Handler:
    """A handler answering every request with `events` as a server-sent-event stream."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=EventStream(events, done=done),
        )

    return handler


def text_events(*parts: str, usage: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The events of a streamed text reply: a role chunk, one chunk per part, a finish chunk
    and (by default) the usage chunk."""
    events = [chunk_body({"role": "assistant", "content": ""})]
    events.extend(chunk_body({"content": part}) for part in parts)
    finish = chunk_body({})
    finish["choices"][0]["finish_reason"] = "stop"
    events.append(finish)
    events.append(
        chunk_body(
            None, usage=usage or {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        )
    )
    return events


async def collect(chunks: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in chunks]


async def test_stream_sends_stream_flags_and_yields_text_then_the_response() -> None:
    """stream() asks for a stream with usage, yields each text delta, and ends with the whole
    reply, its usage and model."""
    client, server = make_client(sse(text_events("Hel", "lo", "!")))
    chunks = await collect(client.stream([ChatMessage.user("Hi")], temperature=0))
    assert server.body["stream"] is True
    assert server.body["stream_options"] == {"include_usage": True}
    assert server.body["temperature"] == 0
    assert chunks[:-1] == [TextChunk(text="Hel"), TextChunk(text="lo"), TextChunk(text="!")]
    final = chunks[-1]
    assert isinstance(final, ResponseChunk)
    assert final.response.message.text == "Hello!"
    assert final.response.usage == Usage(prompt_tokens=9, completion_tokens=3)
    assert final.response.model == "gpt-4o-2024-08-06"


async def test_stream_assembles_interleaved_tool_calls_by_index() -> None:
    """Tool-call deltas are assembled per index, as the SDK assembles them, even interleaved."""

    def call_delta(index: int, **fields: Any) -> dict[str, Any]:
        return chunk_body({"tool_calls": [{"index": index, **fields}]})

    events = [
        chunk_body({"role": "assistant", "content": None}),
        call_delta(0, id="call_a", type="function", function={"name": "get_weather"}),
        call_delta(1, id="call_b", type="function", function={"name": "get_weather"}),
        call_delta(0, function={"arguments": '{"city"'}),
        call_delta(1, function={"arguments": '{"city": "Oslo"}'}),
        call_delta(0, function={"arguments": ':"Paris"}'}),
        chunk_body(None, usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ]
    client, _ = make_client(sse(events))
    chunks = await collect(client.stream([ChatMessage.user("Paris and Oslo?")]))
    assert chunks[0] == ToolCallChunk(index=0, id="call_a", name="get_weather")
    assert chunks[2] == ToolCallChunk(index=0, arguments='{"city"')
    final = chunks[-1]
    assert isinstance(final, ResponseChunk)
    assert final.response.message.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="call_b", name="get_weather", arguments='{"city": "Oslo"}'),
    )


async def test_stream_reply_matches_complete() -> None:
    """The streamed reply is the message complete() parses from the same answer."""
    streamed, _ = make_client(sse(text_events("Bonjour", " Ada")))
    plain, _ = make_client(reply_with({"role": "assistant", "content": "Bonjour Ada"}))
    final = (await collect(streamed.stream([ChatMessage.user("hi")])))[-1]
    whole = await plain.complete([ChatMessage.user("hi")])
    assert isinstance(final, ResponseChunk)
    fields = {"id", "created_at"}
    assert final.response.message.model_dump(exclude=fields) == whole.message.model_dump(
        exclude=fields
    )


async def test_stream_keeps_a_reply_cut_by_max_tokens() -> None:
    """A reply that stops for length streams to the same truncated message complete() gives."""
    events = text_events("Once upon")
    events[-2]["choices"][0]["finish_reason"] = "length"
    client, _ = make_client(sse(events))
    final = (await collect(client.stream([ChatMessage.user("A story")], max_tokens=2)))[-1]
    assert isinstance(final, ResponseChunk)
    assert final.response.message.text == "Once upon"


async def test_stream_merges_stream_options_and_refuses_stream() -> None:
    """stream() keeps a caller's stream_options under include_usage and refuses `stream`."""
    client, server = make_client(sse(text_events("ok")))
    await collect(client.stream([ChatMessage.user("hi")], stream_options={"include_usage": False}))
    assert server.body["stream_options"] == {"include_usage": False}
    with pytest.raises(InvalidArgument, match="set by stream"):
        await collect(client.stream([ChatMessage.user("hi")], stream=True))
    with pytest.raises(InvalidArgument, match="call stream"):
        await client.complete([ChatMessage.user("hi")], stream_options={"include_usage": True})


async def test_stream_closed_early_closes_the_response() -> None:
    """Closing the stream after the first chunk closes the HTTP response."""
    body = EventStream(text_events("a", "b", "c", "d"))
    client, _ = make_client(
        lambda request: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=body
        )
    )
    chunks = client.stream([ChatMessage.user("hi")])
    assert await anext(chunks) == TextChunk(text="a")
    await chunks.aclose()  # type: ignore[attr-defined]
    assert body.closed
    assert body.sent < len(body.lines)


async def test_stream_http_error_becomes_model_http_error() -> None:
    """An error status before the stream starts becomes ModelHTTPError."""
    error = {"error": {"message": "slow down", "type": "rate_limit", "code": None}}
    client, _ = make_client(lambda request: httpx.Response(429, json=error))
    with pytest.raises(ModelHTTPError) as caught:
        await collect(client.stream([ChatMessage.user("hi")]))
    assert caught.value.status_code == 429


async def test_stream_error_event_becomes_model_error() -> None:
    """An error the server sends inside the stream becomes ModelError."""
    events = [chunk_body({"content": "par"}), {"error": {"message": "overloaded"}}]
    client, _ = make_client(sse(events))
    with pytest.raises(ModelError, match="overloaded"):
        await collect(client.stream([ChatMessage.user("hi")]))


async def test_stream_without_chunks_is_model_error() -> None:
    """A stream that ends before any chunk is a ModelError."""
    client, _ = make_client(sse([]))
    with pytest.raises(ModelError, match="empty stream"):
        await collect(client.stream([ChatMessage.user("hi")]))


def test_openai_client_is_a_streaming_chat_client() -> None:
    """OpenAIChatClient satisfies StreamingChatClient."""
    client = make_client(sse([]))[0]
    assert isinstance(client, StreamingChatClient)


class CompleteOnly:
    """A ChatClient with only complete(), as users wrote them before streaming existed."""

    def __init__(self, response: ChatResponse) -> None:
        self.response = response

    async def complete(
        self, messages: Sequence[ChatMessage], *, tools: Any = None, **options: Any
    ) -> ChatResponse:
        return self.response


async def test_stream_chat_falls_back_to_complete() -> None:
    """A client without stream() is called once; its reply arrives whole, then the response."""
    reply = ChatResponse(
        message=ChatMessage.assistant("hi there", tool_calls=[ToolCall(id="c1", name="f")])
    )
    client = CompleteOnly(reply)
    assert not isinstance(client, StreamingChatClient)
    chunks = await collect(stream_chat(client, [ChatMessage.user("hi")]))
    assert chunks == [
        TextChunk(text="hi there"),
        ToolCallChunk(index=0, id="c1", name="f"),
        ToolCallChunk(index=0, arguments="{}"),
        ResponseChunk(response=reply),
    ]


async def test_stream_chat_requires_the_final_response() -> None:
    """A client whose stream ends without a ResponseChunk gets a ModelError."""

    class Truncated(CompleteOnly):
        async def stream(
            self, messages: Sequence[ChatMessage], *, tools: Any = None, **options: Any
        ) -> AsyncIterator[ChatChunk]:
            yield TextChunk(text="half")

    client = Truncated(ChatResponse(message=ChatMessage.assistant("x")))
    with pytest.raises(ModelError, match="without its final ResponseChunk"):
        await collect(stream_chat(client, [ChatMessage.user("hi")]))


def test_chunks_of_splits_text_and_arguments() -> None:
    """chunks_of cuts text and each call's arguments into `size` pieces; the response is last."""
    call = ToolCall(id="c1", name="f", arguments='{"a":1}')
    reply = ChatResponse(message=ChatMessage.assistant("abcde", tool_calls=[call]))
    chunks = chunks_of(reply, size=2)
    assert [c.text for c in chunks if isinstance(c, TextChunk)] == ["ab", "cd", "e"]
    pieces = [c for c in chunks if isinstance(c, ToolCallChunk)]
    assert pieces[0] == ToolCallChunk(index=0, id="c1", name="f")
    assert "".join(c.arguments for c in pieces) == '{"a":1}'
    assert chunks[-1] == ResponseChunk(response=reply)
    with pytest.raises(InvalidArgument, match="size"):
        chunks_of(reply, size=0)
