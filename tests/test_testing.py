"""ScriptedChatClient: scripted replies, recorded requests, no network, no pytest import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memweave.errors import InvalidArgument, MemweaveError
from memweave.llm import (
    ChatClient,
    ChatResponse,
    ResponseChunk,
    StreamingChatClient,
    TextChunk,
    ToolCallChunk,
    Usage,
)
from memweave.messages import ChatMessage, ToolCall
from memweave.testing import RecordedRequest, ScriptedChatClient, ScriptExhausted

TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


async def test_replies_come_in_order() -> None:
    """Text replies become assistant messages, answered in script order."""
    client = ScriptedChatClient(["one", "two"])
    first = await client.complete([ChatMessage.user("a")])
    second = await client.complete([ChatMessage.user("b")])
    assert (first.message.role, first.message.text) == ("assistant", "one")
    assert second.message.text == "two"
    assert first.model == "scripted"
    assert first.usage == Usage()


async def test_message_and_response_replies_are_returned_as_given() -> None:
    """A ChatMessage reply (e.g. with tool calls) and a ChatResponse come back as given."""
    call = ChatMessage.assistant(tool_calls=[ToolCall(id="c1", name="search")])
    response = ChatResponse(
        message=ChatMessage.assistant("done"), usage=Usage(prompt_tokens=7), model="m"
    )
    client = ScriptedChatClient([call, response])
    assert (await client.complete([ChatMessage.user("go")])).message is call
    assert await client.complete([ChatMessage.user("go")]) is response


async def test_every_request_is_recorded() -> None:
    """requests holds the messages, tools (as OpenAI dicts) and options of each call."""
    client = ScriptedChatClient(["ok", "ok"])
    history = [ChatMessage.system("rules"), ChatMessage.user("hi")]
    await client.complete(history, tools=[TOOL], temperature=0)
    await client.complete(history[1:])
    first, second = client.requests
    assert isinstance(first, RecordedRequest)
    assert first.messages == tuple(history)
    assert first.tools == (TOOL,)
    assert first.tool_names == ["search"]
    assert dict(first.options) == {"temperature": 0}
    assert second.tools is None
    assert dict(second.options) == {}


async def test_recorded_options_are_read_only() -> None:
    """A recorded request cannot be changed afterwards."""
    client = ScriptedChatClient(["ok"])
    await client.complete([ChatMessage.user("hi")], temperature=1)
    with pytest.raises(TypeError):
        client.requests[0].options["temperature"] = 2  # type: ignore[index]


async def test_running_out_of_replies_is_a_clear_error() -> None:
    """One call too many raises ScriptExhausted saying how many replies were scripted."""
    client = ScriptedChatClient(["only"])
    await client.complete([ChatMessage.user("1")])
    assert client.remaining == 0
    with pytest.raises(ScriptExhausted, match="scripts only 1 replies") as caught:
        await client.complete([ChatMessage.user("2")])
    assert isinstance(caught.value, MemweaveError)
    assert len(client.requests) == 1


async def test_sync_function_builds_each_reply() -> None:
    """A sync function gets (messages, tools, options) and returns the reply."""
    seen: list[tuple[int, object, dict[str, object]]] = []

    def echo(messages: list[ChatMessage], tools: object, options: dict[str, object]) -> str:
        seen.append((len(messages), tools, options))
        return messages[-1].text.upper()

    client = ScriptedChatClient(echo)
    reply = await client.complete([ChatMessage.user("hi")], tools=[TOOL], seed=1)
    assert reply.message.text == "HI"
    assert seen == [(1, [TOOL], {"seed": 1})]
    assert client.remaining is None


async def test_async_function_builds_each_reply() -> None:
    """An async function works the same way."""

    async def answer(messages: list[ChatMessage], tools: object, options: object) -> ChatMessage:
        return ChatMessage.assistant(f"{len(messages)} messages")

    client = ScriptedChatClient(answer)
    assert (await client.complete([ChatMessage.user("a")])).message.text == "1 messages"
    assert len(client.requests) == 1


async def test_function_returning_non_reply_is_invalid() -> None:
    """A function returning something that is not a reply raises InvalidArgument."""
    client = ScriptedChatClient(lambda messages, tools, options: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidArgument, match="42"):
        await client.complete([ChatMessage.user("a")])


def test_bad_scripts_are_rejected() -> None:
    """A lone string, a non-reply item or a non-assistant message is rejected up front."""
    with pytest.raises(InvalidArgument):
        ScriptedChatClient("just one string")
    with pytest.raises(InvalidArgument):
        ScriptedChatClient([1])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="assistant"):
        ScriptedChatClient([ChatMessage.user("not a reply")])


def test_scripted_client_is_a_chat_client() -> None:
    """ScriptedChatClient satisfies the ChatClient protocol and is not collected by pytest."""
    client: ChatClient = ScriptedChatClient([])
    assert callable(client.complete)
    assert ScriptedChatClient.__test__ is False


def test_module_does_not_import_pytest() -> None:
    """memweave.testing works in any test runner: importing it does not import pytest."""
    code = "import sys, memweave.testing; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_stream_yields_the_script_in_chunks_then_the_reply() -> None:
    """stream() cuts the text and call arguments into chunk_size pieces and ends with the very
    ChatResponse complete() would return."""
    call = ToolCall(id="c1", name="search", arguments='{"q":"x"}')
    reply = ChatMessage.assistant("Looking it up", tool_calls=[call])
    client = ScriptedChatClient([reply], chunk_size=5)
    chunks = [chunk async for chunk in client.stream([ChatMessage.user("go")])]
    texts = [chunk.text for chunk in chunks if isinstance(chunk, TextChunk)]
    assert texts == ["Looki", "ng it", " up"]
    pieces = [chunk for chunk in chunks if isinstance(chunk, ToolCallChunk)]
    assert (pieces[0].id, pieces[0].name) == ("c1", "search")
    assert "".join(piece.arguments for piece in pieces) == '{"q":"x"}'
    final = chunks[-1]
    assert isinstance(final, ResponseChunk)
    assert final.response.message is reply


async def test_stream_records_requests_like_complete() -> None:
    """A streamed request is recorded as complete() records it, and uses up one reply."""
    client = ScriptedChatClient(["one", "two"])
    _ = [chunk async for chunk in client.stream([ChatMessage.user("a")], tools=[TOOL], seed=1)]
    await client.complete([ChatMessage.user("b")])
    first, second = client.requests
    assert first.tool_names == ["search"]
    assert dict(first.options) == {"seed": 1}
    assert second.messages[-1].text == "b"
    assert client.remaining == 0
    with pytest.raises(ScriptExhausted):
        _ = [chunk async for chunk in client.stream([ChatMessage.user("c")])]


async def test_stream_of_a_function_reply() -> None:
    """A reply function's answer streams like a scripted one."""
    client = ScriptedChatClient(lambda messages, tools, options: "echo", chunk_size=3)
    chunks = [chunk async for chunk in client.stream([ChatMessage.user("hi")])]
    assert [c.text for c in chunks if isinstance(c, TextChunk)] == ["ech", "o"]


def test_bad_chunk_options_are_rejected() -> None:
    """chunk_size must be a positive int and chunk_delay a number of seconds >= 0."""
    for size in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgument, match="chunk_size"):
            ScriptedChatClient([], chunk_size=size)  # type: ignore[arg-type]
    for delay in (-1, float("nan"), "1"):
        with pytest.raises(InvalidArgument, match="chunk_delay"):
            ScriptedChatClient([], chunk_delay=delay)  # type: ignore[arg-type]


def test_scripted_client_is_a_streaming_chat_client() -> None:
    """ScriptedChatClient satisfies StreamingChatClient."""
    assert isinstance(ScriptedChatClient([]), StreamingChatClient)
