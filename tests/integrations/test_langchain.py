"""LangChain adapters: message conversion, the chat history on memweave backends, reducers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from memweave._codec import decode_one, encode
from memweave.errors import ConfigurationError, InvalidMessage
from memweave.integrations.langchain import (
    MemweaveChatMessageHistory,
    SyncCallInEventLoop,
    messages_from_memweave,
    messages_to_memweave,
    reduce_messages,
    reducer_runnable,
    run_sync,
)
from memweave.messages import ChatMessage as MemweaveMessage
from memweave.messages import ToolCall
from memweave.providers import ChatHistoryProvider, InMemoryChatHistoryProvider, from_url
from memweave.reducers import MessageCountReducer
from tests.integrations.conftest import REDIS_URL, Backend, redis_reachable

pytestmark = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:DeprecationWarning",
    "ignore::langchain_core._api.deprecation.LangChainDeprecationWarning",
)


def _lc_messages() -> list[BaseMessage]:
    return [
        SystemMessage("Be brief."),
        HumanMessage(
            [
                "plain",
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "image", "source_type": "url", "url": "https://x.test/b.png"},
            ],
            name="ada",
            id="h-1",
        ),
        AIMessage(
            "",
            tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}],
            usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
            response_metadata={"model_name": "fake"},
            additional_kwargs={"refusal": None},
        ),
        ToolMessage("sunny", tool_call_id="c1", status="error", artifact={"raw": [1, 2]}),
        AIMessage("It is sunny.", name="bot"),
        ChatMessage(content="a custom role", role="critic"),
        AIMessageChunk(content="partial"),
    ]


def _through_storage(messages: list[MemweaveMessage]) -> list[MemweaveMessage]:
    return [decode_one(encode(m), session_id="s", position=i) for i, m in enumerate(messages)]


# -- conversion ---------------------------------------------------------------------------------


def test_messages_round_trip_losslessly() -> None:
    """LangChain messages come back from storage exactly as they were saved."""
    messages = _lc_messages()
    back = messages_from_memweave(_through_storage(messages_to_memweave(messages)))
    assert [type(m) for m in back] == [type(m) for m in messages]
    assert [m.model_dump() for m in back] == [m.model_dump() for m in messages]


def test_messages_to_memweave_maps_onto_memweave_fields() -> None:
    """Roles, names, content blocks, tool calls and ids become memweave fields."""
    system, human, call, result, reply, custom, chunk = messages_to_memweave(_lc_messages())
    assert (system.role, human.role, call.role, result.role) == (
        "system",
        "user",
        "assistant",
        "tool",
    )
    assert (human.name, human.id) == ("ada", "h-1")
    assert isinstance(human.content, list)
    assert [part["type"] for part in human.content] == ["text", "text", "image_url"]
    assert call.tool_calls == (
        ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}'),
    )
    assert (result.tool_call_id, result.text) == ("c1", "sunny")
    assert (reply.name, reply.text) == ("bot", "It is sunny.")
    assert (custom.role, custom.metadata["langchain"]["type"]) == ("user", "chat")  # type: ignore[index,call-overload]
    assert chunk.role == "assistant"


def test_messages_to_memweave_gives_missing_ids_once() -> None:
    """A message without an id gets one, set on it, so converting it again gives the same."""
    message = HumanMessage("hi")
    [first] = messages_to_memweave([message])
    [again] = messages_to_memweave([message])
    assert message.id == first.id == again.id


def test_messages_to_memweave_keeps_ids_memweave_cannot_store() -> None:
    """An id memweave cannot store gets a stable stand-in and comes back unchanged."""
    message = HumanMessage("hi", id="x" * 300)
    [first] = messages_to_memweave([message])
    [again] = messages_to_memweave([message])
    assert first.id == again.id != message.id
    assert messages_from_memweave([first])[0].id == message.id


def test_messages_to_memweave_rejects_what_it_cannot_store() -> None:
    """Non-messages, RemoveMessage and non-JSON data raise InvalidMessage with a position."""
    with pytest.raises(InvalidMessage) as caught:
        messages_to_memweave([HumanMessage("ok"), "hello"])  # type: ignore[list-item]
    assert caught.value.position == 1
    with pytest.raises(InvalidMessage):
        messages_to_memweave([RemoveMessage(id="x")])
    with pytest.raises(InvalidMessage) as not_json:
        messages_to_memweave([ToolMessage("r", tool_call_id="c", artifact=object())])
    assert not_json.value.position == 0


def test_messages_from_memweave_reads_native_messages() -> None:
    """Messages memweave wrote itself map from their own fields."""
    native = [
        MemweaveMessage.user("hi", name="ada", id="u"),
        MemweaveMessage.assistant(tool_calls=[ToolCall(id="c", name="f", arguments='{"a": 1}')]),
        MemweaveMessage.tool("c", "done"),
    ]
    human, ai, tool = messages_from_memweave(native)
    assert human == HumanMessage("hi", name="ada", id="u")
    assert isinstance(ai, AIMessage)
    assert ai.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c", "type": "tool_call"}]
    assert isinstance(tool, ToolMessage)
    assert (tool.tool_call_id, tool.content) == ("c", "done")


# -- chat history -------------------------------------------------------------------------------


def _recording_model(replies: list[str], seen: list[list[BaseMessage]]) -> RunnableLambda[Any, Any]:
    model = GenericFakeChatModel(messages=iter(AIMessage(text) for text in replies))

    def record(messages: list[BaseMessage]) -> list[BaseMessage]:
        seen.append(list(messages))
        return messages

    return RunnableLambda(record) | model  # type: ignore[return-value]


async def test_runnable_with_message_history_async(backend: Backend) -> None:
    """ainvoke loads the stored history and stores the new turn, each message once."""
    session_id = backend.new_session_id()
    seen: list[list[BaseMessage]] = []
    chain = RunnableWithMessageHistory(
        _recording_model(["Hi Ada.", "You are Ada."], seen),
        lambda sid: MemweaveChatMessageHistory(backend.history, sid),
    )
    config: Any = {"configurable": {"session_id": session_id}}
    await chain.ainvoke("I am Ada.", config=config)
    await chain.ainvoke("Who am I?", config=config)
    assert [m.content for m in seen[1]] == ["I am Ada.", "Hi Ada.", "Who am I?"]
    stored = await backend.history.list_messages(session_id)
    assert [(m.role, m.text) for m in stored] == [
        ("user", "I am Ada."),
        ("assistant", "Hi Ada."),
        ("user", "Who am I?"),
        ("assistant", "You are Ada."),
    ]


@pytest.fixture(params=["sqlite", "redis"])
def sync_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChatHistoryProvider]:
    """A backend used only through the synchronous API, closed on memweave's loop."""
    if request.param == "redis":
        redis_reachable(REDIS_URL)
        url = REDIS_URL
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    store = from_url(url)
    yield store
    run_sync(store.aclose())


def test_runnable_with_message_history_sync(sync_store: ChatHistoryProvider) -> None:
    """invoke works from synchronous code, on any backend, from several threads."""
    session_id = f"mwt-int-{os.urandom(8).hex()}"
    seen: list[list[BaseMessage]] = []
    chain = RunnableWithMessageHistory(
        _recording_model(["Hi Ada.", "You are Ada."], seen),
        lambda sid: MemweaveChatMessageHistory(sync_store, sid),
    )
    config: Any = {"configurable": {"session_id": session_id}}
    try:
        chain.invoke("I am Ada.", config=config)
        chain.invoke("Who am I?", config=config)
        assert [m.content for m in seen[1]] == ["I am Ada.", "Hi Ada.", "Who am I?"]
        history = MemweaveChatMessageHistory(sync_store, session_id)
        assert [m.content for m in history.messages] == [
            "I am Ada.",
            "Hi Ada.",
            "Who am I?",
            "You are Ada.",
        ]
    finally:
        MemweaveChatMessageHistory(sync_store, session_id).clear()
    assert run_sync(sync_store.count_messages(session_id)) == 0


async def test_sync_methods_refuse_to_block_a_running_loop() -> None:
    """Inside a running event loop every sync method raises SyncCallInEventLoop."""
    history = MemweaveChatMessageHistory(InMemoryChatHistoryProvider(), "s")
    with pytest.raises(SyncCallInEventLoop, match="aget_messages"):
        _ = history.messages
    with pytest.raises(SyncCallInEventLoop, match="aadd_messages"):
        history.add_messages([HumanMessage("hi")])
    with pytest.raises(SyncCallInEventLoop, match="aclear"):
        history.clear()
    with pytest.raises(SyncCallInEventLoop, match="ainvoke"):
        reducer_runnable(MessageCountReducer(2)).invoke([HumanMessage("hi")])
    assert await history.aget_messages() == []


async def test_history_is_idempotent_by_id_and_reduces_on_read() -> None:
    """Re-adding a message stores nothing, equal texts are kept, and the reducer shapes reads."""
    store = InMemoryChatHistoryProvider()
    history = MemweaveChatMessageHistory(store, "s", reducer=MessageCountReducer(2))
    messages = [HumanMessage("same"), HumanMessage("same"), AIMessage("ok")]
    await history.aadd_messages(messages)
    await history.aadd_messages(messages)
    assert await store.count_messages("s") == 3
    assert [m.content for m in await history.aget_messages()] == ["same", "ok"]
    await history.aclear()
    assert await store.count_messages("s") == 0
    with pytest.raises(ConfigurationError):
        MemweaveChatMessageHistory(object(), "s")  # type: ignore[arg-type]


# -- reducers -----------------------------------------------------------------------------------


def _conversation() -> list[BaseMessage]:
    return [
        SystemMessage("rules"),
        HumanMessage("q1"),
        AIMessage("a1"),
        HumanMessage("weather?"),
        AIMessage("", tool_calls=[{"name": "w", "args": {}, "id": "c"}]),
        ToolMessage("sunny", tool_call_id="c"),
        AIMessage("It is sunny."),
    ]


async def test_reduce_messages_keeps_system_and_tool_pairs() -> None:
    """The system message stays, a tool result keeps its call, and kept messages are the
    same objects."""
    messages = _conversation()
    kept = await reduce_messages(messages, MessageCountReducer(5))
    assert [m.content for m in kept] == ["rules", "weather?", "", "sunny", "It is sunny."]
    assert all(any(k is m for m in messages) for k in kept)
    four = await reduce_messages(messages, MessageCountReducer(4, start_on_user=False))
    assert [type(m).__name__ for m in four] == [
        "SystemMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    three = await reduce_messages(messages, MessageCountReducer(3, start_on_user=False))
    assert [m.content for m in three] == ["rules", "It is sunny."]


def test_reducer_runnable_runs_in_sync_chains() -> None:
    """The runnable reduces with invoke from synchronous code."""
    trim = reducer_runnable(MessageCountReducer(3))
    kept = trim.invoke(_conversation()[:3])
    assert [m.content for m in kept] == ["rules", "q1", "a1"]
    with pytest.raises(ConfigurationError):
        reducer_runnable(object())  # type: ignore[arg-type]


async def test_reducer_runnable_runs_in_async_chains() -> None:
    """The runnable reduces with ainvoke."""
    kept = await reducer_runnable(MessageCountReducer(2)).ainvoke(_conversation()[:3])
    assert [m.content for m in kept] == ["rules", "a1"]
