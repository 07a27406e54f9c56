"""AutoGen adapters: message conversion, a model context on memweave backends, and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall, Image
from autogen_core.memory import MemoryContent, MemoryMimeType
from autogen_core.model_context import BufferedChatCompletionContext, UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelFamily,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.replay import ReplayChatCompletionClient

from memweave._codec import decode_one, encode
from memweave.context import VectorMemory
from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage
from memweave.integrations.autogen import (
    MemweaveChatCompletionContext,
    MemweaveMemory,
    messages_from_memweave,
    messages_to_memweave,
)
from memweave.messages import ChatMessage, ToolCall
from memweave.providers import InMemoryChatHistoryProvider
from memweave.reducers import MessageCountReducer
from tests.integrations._support import HashedWordEmbeddings
from tests.integrations.conftest import Backend

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
    "hKmMIQAAAABJRU5ErkJggg=="
)
TOOLS_MODEL = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family=ModelFamily.UNKNOWN,
    structured_output=False,
)


def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


def _call_result() -> CreateResult:
    return CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id="call-1", name="get_weather", arguments='{"city": "Paris"}')],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
        cached=False,
    )


def _llm_messages() -> list[LLMMessage]:
    return [
        SystemMessage(content="Be brief."),
        UserMessage(content="hi", source="ada"),
        UserMessage(content=["look", Image.from_base64(PNG)], source="ada"),
        AssistantMessage(
            content=[
                FunctionCall(id="c1", name="f", arguments="{}"),
                FunctionCall(id="", name="g", arguments='{"x": 1}'),
            ],
            thought="Let me check.",
            source="bot",
        ),
        FunctionExecutionResultMessage(
            content=[
                FunctionExecutionResult(content="one", name="f", call_id="c1"),
                FunctionExecutionResult(content="two", name="g", call_id="", is_error=True),
            ]
        ),
        FunctionExecutionResultMessage(
            content=[FunctionExecutionResult(content="late", name="f", call_id="c1")]
        ),
        AssistantMessage(content="Done.", thought="easy", source="bot"),
    ]


def _dump(messages: list[LLMMessage]) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(m.model_dump(), default=str)) for m in messages]


# -- conversion ---------------------------------------------------------------------------------


def test_messages_round_trip_through_storage() -> None:
    """Every LLMMessage kind comes back from stored memweave messages as it was."""
    messages = _llm_messages()
    stored = [
        decode_one(encode(m), session_id="s", position=i)
        for i, m in enumerate(messages_to_memweave(messages))
    ]
    back = messages_from_memweave(stored)
    assert _dump(back) == _dump(messages)


def test_messages_to_memweave_maps_onto_memweave_fields() -> None:
    """Sources become names, calls become tool calls, and each result its own tool message."""
    converted = messages_to_memweave(_llm_messages())
    assert [m.role for m in converted] == [
        "system",
        "user",
        "user",
        "assistant",
        "tool",
        "tool",
        "tool",
        "assistant",
    ]
    assert converted[1].name == "ada"
    assert converted[2].content[1]["type"] == "image_url"  # type: ignore[index]
    assert converted[3].text == "Let me check."
    assert converted[3].tool_calls[0] == ToolCall(id="c1", name="f", arguments="{}")
    assert converted[4].tool_call_id == "c1"
    assert converted[5].tool_call_id == converted[3].tool_calls[1].id != ""


def test_messages_to_memweave_rejects_other_objects() -> None:
    """A non-LLMMessage raises InvalidMessage naming its position."""
    with pytest.raises(InvalidMessage) as caught:
        messages_to_memweave([SystemMessage(content="x"), "hello"])  # type: ignore[list-item]
    assert caught.value.position == 1


def test_messages_from_memweave_reads_native_messages() -> None:
    """Messages memweave wrote itself map from their own fields, tool results grouped."""
    native = [
        ChatMessage.user("hi"),
        ChatMessage.assistant(
            "thinking", tool_calls=[ToolCall(id="a", name="f"), ToolCall(id="b", name="g")]
        ),
        ChatMessage.tool("a", "1"),
        ChatMessage.tool("b", "2"),
        ChatMessage.assistant("ok", name="bot"),
    ]
    user, call, results, reply = messages_from_memweave(native)
    assert user == UserMessage(content="hi", source="user")
    assert isinstance(call, AssistantMessage)
    assert call.thought == "thinking"
    assert isinstance(results, FunctionExecutionResultMessage)
    assert [(r.call_id, r.name) for r in results.content] == [("a", "f"), ("b", "g")]
    assert reply == AssistantMessage(content="ok", source="bot")


# -- model context ------------------------------------------------------------------------------


async def test_assistant_agent_stores_and_resumes_the_conversation(backend: Backend) -> None:
    """An AssistantAgent's turns, tool call included, are stored once and a new agent on the
    same session continues from them."""
    session_id = backend.new_session_id()
    client = ReplayChatCompletionClient([_call_result(), "It is sunny."], model_info=TOOLS_MODEL)
    agent = AssistantAgent(
        "helper",
        model_client=client,
        tools=[get_weather],
        reflect_on_tool_use=True,
        model_context=MemweaveChatCompletionContext(backend.history, session_id),
    )
    await agent.run(task="Weather in Paris?")
    stored = await backend.history.list_messages(session_id)
    assert [(m.role, m.text) for m in stored] == [
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny in Paris"),
        ("assistant", "It is sunny."),
    ]
    assert stored[1].tool_calls[0].id == stored[2].tool_call_id == "call-1"

    later = ReplayChatCompletionClient(["You asked about Paris."], model_info=TOOLS_MODEL)
    resumed = AssistantAgent(
        "helper",
        model_client=later,
        model_context=MemweaveChatCompletionContext(backend.history, session_id),
    )
    await resumed.run(task="What did I ask?")
    sent = later.create_calls[0]["messages"]
    assert [type(m).__name__ for m in sent] == [
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
        "FunctionExecutionResultMessage",
        "AssistantMessage",
        "UserMessage",
    ]
    assert await backend.history.count_messages(session_id) == 6


async def test_reducer_keeps_system_messages_and_tool_pairs() -> None:
    """A memweave reducer keeps the system message and never orphans a function result,
    where AutoGen's buffered context loses both."""
    history: list[LLMMessage] = [
        SystemMessage(content="rules"),
        UserMessage(content="q", source="user"),
        AssistantMessage(content=[FunctionCall(id="c", name="f", arguments="{}")], source="a"),
        FunctionExecutionResultMessage(
            content=[FunctionExecutionResult(content="r", name="f", call_id="c")]
        ),
        AssistantMessage(content="answer", source="a"),
    ]
    context = MemweaveChatCompletionContext(
        InMemoryChatHistoryProvider(), "s", reducer=MessageCountReducer(4, start_on_user=False)
    )
    buffered = BufferedChatCompletionContext(buffer_size=3)
    for message in history:
        await context.add_message(message)
        await buffered.add_message(message)
    kept = await context.get_messages()
    assert [type(m).__name__ for m in kept] == [
        "SystemMessage",
        "AssistantMessage",
        "FunctionExecutionResultMessage",
        "AssistantMessage",
    ]
    assert not any(isinstance(m, SystemMessage) for m in await buffered.get_messages())


async def test_context_state_and_initial_messages() -> None:
    """Initial messages fill an empty session; state names the session; AutoGen state loads."""
    history = InMemoryChatHistoryProvider()
    context = MemweaveChatCompletionContext(
        history, "s1", initial_messages=[SystemMessage(content="rules")]
    )
    await context.add_message(UserMessage(content="hi", source="user"))
    assert await context.save_state() == {"session_id": "s1"}
    other = MemweaveChatCompletionContext(history, "s2")
    await other.load_state({"session_id": "s1"})
    assert [type(m).__name__ for m in await other.get_messages()] == [
        "SystemMessage",
        "UserMessage",
    ]
    plain = UnboundedChatCompletionContext([UserMessage(content="from autogen", source="user")])
    await other.load_state(await plain.save_state())
    assert [m.text for m in await history.list_messages("s1")] == ["from autogen"]
    await other.clear()
    assert await history.count_messages("s1") == 0
    with pytest.raises(ConfigurationError):
        MemweaveChatCompletionContext(object(), "s")  # type: ignore[arg-type]


# -- memory -------------------------------------------------------------------------------------


async def test_memory_injects_hits_for_the_turn_without_storing_them(tmp_path: Path) -> None:
    """Relevant memories reach the model as fenced system text and stay out of the history;
    add, query and clear work on the memory's scope."""
    history = InMemoryChatHistoryProvider()
    async with VectorMemory(tmp_path / "memory", embedder=HashedWordEmbeddings()) as vectors:
        memory = MemweaveMemory(vectors, user_id="ada")
        await memory.add(
            MemoryContent(content="Ada's favourite city is Lisbon.", mime_type=MemoryMimeType.TEXT)
        )
        await memory.add(MemoryContent(content={"drink": "tea"}, mime_type=MemoryMimeType.JSON))
        client = ReplayChatCompletionClient(["Lisbon."])
        agent = AssistantAgent(
            "helper",
            model_client=client,
            memory=[memory],
            model_context=MemweaveChatCompletionContext(history, "s"),
        )
        result = await agent.run(task="Which city is my favourite?")
        sent = client.create_calls[0]["messages"]
        assert isinstance(sent[-1], SystemMessage)
        assert "Lisbon" in sent[-1].content
        assert [type(m).__name__ for m in sent] == ["SystemMessage", "UserMessage", "SystemMessage"]
        assert [m.role for m in await history.list_messages("s")] == ["user", "assistant"]
        assert any(type(m).__name__ == "MemoryQueryEvent" for m in result.messages)

        found = await memory.query("favourite city")
        assert found.results[0].content == "Ada's favourite city is Lisbon."
        assert found.results[0].metadata["mime_type"] == "text/plain"  # type: ignore[index]
        assert 0 <= found.results[0].metadata["score"] <= 1  # type: ignore[index]
        with pytest.raises(InvalidArgument):
            await memory.add(MemoryContent(content=b"raw", mime_type=MemoryMimeType.BINARY))
        await memory.clear()
        assert (await memory.query("favourite city")).results == []
        assert await vectors.count_memories(user_id="ada") == 0


async def test_memory_on_a_plain_context_adds_a_system_message(tmp_path: Path) -> None:
    """On an AutoGen context the memory is added as a system message, like ListMemory does."""
    async with VectorMemory(tmp_path / "memory", embedder=HashedWordEmbeddings()) as vectors:
        memory = MemweaveMemory(vectors, session_id="chat-1")
        await memory.add(MemoryContent(content="The door code is 1234.", mime_type="text/plain"))
        context = UnboundedChatCompletionContext()
        await context.add_message(UserMessage(content="What is the door code?", source="user"))
        update = await memory.update_context(context)
        assert len(update.memories.results) == 1
        last = (await context.get_messages())[-1]
        assert isinstance(last, SystemMessage)
        assert "1234" in last.content
        await memory.close()
        with pytest.raises(ConfigurationError):
            MemweaveMemory(vectors)
