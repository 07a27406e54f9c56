"""Every adapter with a reducer reads only its window, through `list_messages(reducer=...)`,
and returns what reducing the whole stored history returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from memweave.integrations import agent_framework, autogen, langchain
from memweave.messages import ChatMessage, ToolCall
from memweave.providers import ChatHistoryProvider
from memweave.reducers import MessageCountReducer, TokenBudgetReducer
from memweave.reducers.base import ChatReducer
from tests.orchestration._builders import ReadRecordingHistory

STORED = 1000

Read = Callable[[ChatHistoryProvider, ChatReducer], Awaitable[list[Any]]]


def chat(size: int) -> list[ChatMessage]:
    """A long one-user chat: a system message, questions and answers, and tool rounds."""
    out = [ChatMessage.system("Be brief.")]
    turn = 0
    while len(out) < size:
        out.append(ChatMessage.user(f"question {turn} " + "word " * (turn % 13)))
        if turn % 5 == 2:
            found = ToolCall(id=f"call_{turn}", name="lookup", arguments='{"q": 1}')
            out.append(ChatMessage.assistant("", tool_calls=[found]))
            out.append(ChatMessage.tool(found.id, f"result {turn}", name="lookup"))
        out.append(ChatMessage.assistant(f"answer {turn} " + "word " * (turn % 17)))
        turn += 1
    return out


async def read_langchain(history: ChatHistoryProvider, reducer: ChatReducer) -> list[Any]:
    adapter = langchain.MemweaveChatMessageHistory(history, "s1", reducer=reducer)
    return await adapter.aget_messages()


async def read_autogen(history: ChatHistoryProvider, reducer: ChatReducer) -> list[Any]:
    context = autogen.MemweaveChatCompletionContext(history, "s1", reducer=reducer)
    return await context.get_messages()


async def read_agent_framework(history: ChatHistoryProvider, reducer: ChatReducer) -> list[Any]:
    provider = agent_framework.MemweaveHistoryProvider(history, reducer=reducer)
    return [m.to_dict() for m in await provider.get_messages("s1")]


def converted(adapter: str, messages: list[ChatMessage]) -> list[Any]:
    """What the adapter returns for these memweave messages."""
    if adapter == "langchain":
        return langchain.messages_from_memweave(messages)
    if adapter == "autogen":
        return autogen.messages_from_memweave(messages)
    return [m.to_dict() for m in agent_framework.messages_from_memweave(messages)]


ADAPTERS = [
    pytest.param("langchain", read_langchain, id="langchain"),
    pytest.param("autogen", read_autogen, id="autogen"),
    pytest.param("agent_framework", read_agent_framework, id="agent_framework"),
]
REDUCERS = [
    pytest.param(lambda: MessageCountReducer(30), id="count"),
    pytest.param(lambda: TokenBudgetReducer(500), id="tokens"),
]


@pytest.mark.parametrize("make_reducer", REDUCERS)
@pytest.mark.parametrize(("adapter", "read"), ADAPTERS)
async def test_adapter_reads_only_the_window_of_its_reducer(
    adapter: str, read: Read, make_reducer: Any
) -> None:
    """The adapter calls `list_messages(reducer=...)` once, reads far less than the session,
    and returns the reducer's window of the whole history."""
    history = ReadRecordingHistory()
    stored = chat(STORED)
    await history.add_messages("s1", stored)
    history.forget_reads()
    reducer = make_reducer()
    got = await read(history, reducer)
    assert [r["reducer"] for r in history.reads] == [reducer]
    assert history.whole_reads == 0
    assert history.entries_read < STORED // 2
    assert got == converted(adapter, await make_reducer().reduce(stored))


@pytest.mark.parametrize(("adapter", "read"), ADAPTERS)
async def test_adapter_reducer_shrinks_the_view_of_a_provider_read_reducer(
    adapter: str, read: Read
) -> None:
    """With a read reducer on the provider, the adapter's reducer shrinks that view."""
    history = ReadRecordingHistory(reducer=MessageCountReducer(60))
    stored = chat(STORED)
    await history.add_messages("s1", stored)
    got = await read(history, MessageCountReducer(20))
    view = await MessageCountReducer(60).reduce(stored)
    assert got == converted(adapter, await MessageCountReducer(20).reduce(view))
