"""Agent Framework adapters: message conversion, and a real `Agent` on memweave backends."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_framework import AgentSession, Content, Message

from memweave._codec import decode_one, encode
from memweave.context import Context, ContextProvider, VectorMemory
from memweave.errors import ConfigurationError, InvalidMessage, InvalidSessionId
from memweave.integrations.agent_framework import (
    MemweaveContextProvider,
    MemweaveHistoryProvider,
    messages_from_memweave,
    messages_to_memweave,
)
from memweave.messages import ChatMessage, ToolCall
from memweave.providers import InMemoryChatHistoryProvider
from memweave.reducers import MessageCountReducer
from memweave.session import Session
from tests.integrations._af_support import WEATHER_CALL, ScriptedAFChatClient, make_agent
from tests.integrations._support import HashedWordEmbeddings
from tests.integrations.conftest import ROOT, Backend

PNG = "data:image/png;base64,iVBORw0KGgo="


def _af_messages() -> list[Message]:
    """Agent Framework messages covering every kind of content the conversion handles."""
    return [
        Message("system", ["Be brief."]),
        Message(
            "user",
            [
                "Look:",
                Content.from_uri(PNG),
                Content.from_uri("https://x.test/a.png", media_type="image/png"),
            ],
            author_name="ada",
            message_id="u-1",
        ),
        Message(
            "assistant",
            [
                "Checking.",
                Content.from_function_call("c1", "get_weather", arguments={"city": "Paris"}),
                Content.from_function_call("c2", "now"),
            ],
            author_name="bot",
            additional_properties={"trace": [1, 2]},
        ),
        Message(
            "tool",
            [
                Content.from_function_result("c1", result="sunny"),
                Content.from_function_result("c2", result={"hour": 12}, exception="boom"),
            ],
            author_name="bot",
            message_id="t-1",
        ),
        Message(
            "assistant",
            [
                Content.from_text_reasoning(text="thinking"),
                Content(
                    "text",
                    text="No.",
                    additional_properties={"core": {"model_output_kind": "refusal"}},
                ),
                Content.from_usage({"input_token_count": 3}),
            ],
        ),
        Message("critic", ["a custom role"]),
        Message("tool", ["a tool message without results"]),
        Message("user", [Content.from_text("")], message_id="x" * 300),
        Message("assistant", []),
        Message("user", ["two", "texts"]),
    ]


def _stored(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages as a backend reads them back: through the stored JSON form."""
    return [decode_one(encode(m), session_id="s", position=i) for i, m in enumerate(messages)]


# -- conversion ---------------------------------------------------------------------------------


def test_messages_round_trip_losslessly() -> None:
    """Agent Framework messages come back from storage exactly as they were saved."""
    messages = _af_messages()
    stored = _stored(messages_to_memweave(messages))
    assert [m.to_dict() for m in messages_from_memweave(stored)] == [m.to_dict() for m in messages]


def test_messages_to_memweave_maps_onto_memweave_fields() -> None:
    """Text, author, images, function calls and results, and ids become memweave fields."""
    converted = messages_to_memweave(_af_messages()[1:4])
    user, assistant, first, second = converted
    assert (user.role, user.name, user.id, user.text) == ("user", "ada", "u-1", "Look:")
    assert isinstance(user.content, list)
    assert [part["type"] for part in user.content] == ["text", "image_url", "image_url"]
    assert (assistant.text, assistant.name) == ("Checking.", "bot")
    assert assistant.tool_calls == (
        ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="c2", name="now", arguments="{}"),
    )
    assert [(m.role, m.tool_call_id, m.text, m.id) for m in (first, second)] == [
        ("tool", "c1", "sunny", "t-1"),
        ("tool", "c2", '{"hour": 12}', "t-1#1"),
    ]


def test_messages_to_memweave_gives_missing_ids_once() -> None:
    """A message without an id gets one, set on it, so converting again gives the same id."""
    message = Message("user", ["hi"])
    [first] = messages_to_memweave([message])
    [again] = messages_to_memweave([message])
    assert message.message_id == first.id == again.id


def test_messages_to_memweave_keeps_unmappable_data_in_metadata() -> None:
    """Content memweave has no field for is kept under metadata['agent_framework']."""
    [message] = messages_to_memweave(
        [Message("assistant", [Content.from_text_reasoning(text="hm")])]
    )
    assert message.text == ""
    layout = message.metadata["agent_framework"]["contents"]  # type: ignore[index,call-overload]
    assert layout == [
        {"k": "raw", "c": {"type": "text_reasoning", "text": "hm", "additional_properties": {}}}
    ]


def test_messages_to_memweave_rejects_what_it_cannot_store() -> None:
    """A non-message, or data that is not JSON (NaN), raises InvalidMessage with its position."""
    with pytest.raises(InvalidMessage) as not_a_message:
        messages_to_memweave([Message("user", ["ok"]), "hello"])  # type: ignore[list-item]
    assert not_a_message.value.position == 1
    with pytest.raises(InvalidMessage):
        messages_to_memweave(Message("user", ["hi"]))  # type: ignore[arg-type]
    odd = Message("user", ["hi"], additional_properties={"score": float("nan")})
    with pytest.raises(InvalidMessage) as not_json:
        messages_to_memweave([odd])
    assert not_json.value.position == 0


def test_messages_from_memweave_reads_native_messages() -> None:
    """Messages memweave wrote itself (no AF metadata) map from their own fields."""
    native = [
        ChatMessage.system("rules", id="s"),
        ChatMessage.user(
            [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": PNG}}],
            name="ada",
        ),
        ChatMessage.assistant("ok", tool_calls=[ToolCall(id="c1", name="f", arguments="{}")]),
        ChatMessage.tool("c1", "done"),
        ChatMessage.assistant(refusal="no"),
    ]
    system, user, assistant, tool, refusal = messages_from_memweave(native)
    assert (system.role, system.text, system.message_id) == ("system", "rules", "s")
    assert (user.author_name, [c.type for c in user.contents]) == ("ada", ["text", "data"])
    assert [c.type for c in assistant.contents] == ["text", "function_call"]
    assert (assistant.contents[1].call_id, assistant.contents[1].name) == ("c1", "f")
    assert (tool.role, tool.contents[0].call_id, tool.contents[0].result) == ("tool", "c1", "done")
    assert refusal.contents[0].text == "no"


def test_messages_from_memweave_survives_a_mismatched_layout() -> None:
    """A layout that no longer fits the fields falls back to the fields, with a warning."""
    bad = ChatMessage.user(
        "hi", metadata={"agent_framework": {"v": 1, "contents": [{"k": "call"}]}}
    )
    [message] = messages_from_memweave([bad])
    assert message.text == "hi"


# -- history provider ---------------------------------------------------------------------------


async def test_save_messages_twice_stores_them_once() -> None:
    """Saving the same AF messages again stores nothing, ids or not; equal texts are kept."""
    history = InMemoryChatHistoryProvider()
    provider = MemweaveHistoryProvider(history)
    messages = [
        Message("user", ["same"]),
        Message("user", ["same"]),
        Message("user", ["x"], message_id="m"),
    ]
    await provider.save_messages("s", messages)
    await provider.save_messages("s", messages)
    assert [m.text for m in await history.list_messages("s")] == ["same", "same", "x"]
    loaded = await provider.get_messages("s")
    assert [m.message_id for m in loaded] == [m.message_id for m in messages]


async def test_get_messages_applies_the_reducer() -> None:
    """A reducer shapes what is loaded; storage stays whole."""
    history = InMemoryChatHistoryProvider()
    provider = MemweaveHistoryProvider(history, reducer=MessageCountReducer(2))
    await provider.save_messages("s", [Message("user", [str(i)]) for i in range(5)])
    assert [m.text for m in await provider.get_messages("s")] == ["3", "4"]
    assert await history.count_messages("s") == 5


async def test_provider_rejects_a_missing_session_and_bad_arguments() -> None:
    """No session id, a non-backend or a non-reducer is a clear error."""
    provider = MemweaveHistoryProvider(InMemoryChatHistoryProvider())
    with pytest.raises(InvalidSessionId):
        await provider.get_messages(None)
    with pytest.raises(ConfigurationError):
        MemweaveHistoryProvider(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MemweaveHistoryProvider(InMemoryChatHistoryProvider(), reducer=object())  # type: ignore[arg-type]


async def test_streamed_runs_are_stored_once() -> None:
    """A streamed run with a tool call stores the same messages as a plain one, once each."""
    history = InMemoryChatHistoryProvider()
    client = ScriptedAFChatClient([WEATHER_CALL, "It is sunny."])
    agent = make_agent(client, [MemweaveHistoryProvider(history)])
    session = agent.create_session()
    stream = agent.run("Weather in Paris?", session=session, stream=True)
    async for _ in stream:
        pass
    await stream.get_final_response()
    stored = await history.list_messages(session.session_id)
    assert [(m.role, m.text) for m in stored] == [
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny in Paris"),
        ("assistant", "It is sunny."),
    ]


async def test_parallel_tool_calls_are_stored_per_result_and_loaded_whole() -> None:
    """Two calls in one turn store one memweave tool message per result; loading gives Agent
    Framework its single tool message back."""
    history = InMemoryChatHistoryProvider()
    calls = ChatMessage.assistant(
        tool_calls=[
            ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="c2", name="get_weather", arguments='{"city": "Rome"}'),
        ]
    )
    provider = MemweaveHistoryProvider(history)
    agent = make_agent(ScriptedAFChatClient([calls, "Both sunny."]), [provider])
    session = agent.create_session()
    await agent.run("Paris and Rome?", session=session)
    stored = await history.list_messages(session.session_id)
    assert [(m.role, m.tool_call_id) for m in stored] == [
        ("user", None),
        ("assistant", None),
        ("tool", "c1"),
        ("tool", "c2"),
        ("assistant", None),
    ]
    loaded = await provider.get_messages(session.session_id)
    assert [m.role for m in loaded] == ["user", "assistant", "tool", "assistant"]
    assert [c.call_id for c in loaded[2].contents] == ["c1", "c2"]


async def test_store_flags_choose_what_is_stored() -> None:
    """With store_inputs=False only the agent's replies are stored."""
    history = InMemoryChatHistoryProvider()
    agent = make_agent(
        ScriptedAFChatClient(["hello"]), [MemweaveHistoryProvider(history, store_inputs=False)]
    )
    session = agent.create_session()
    await agent.run("hi", session=session)
    assert [(m.role, m.text) for m in await history.list_messages(session.session_id)] == [
        ("assistant", "hello")
    ]


async def test_agent_conversation_persists_once_resumes_and_recalls(
    backend: Backend, tmp_path: Path
) -> None:
    """Several turns with a tool call store each message once, get memory injected, and
    resume in a new OS process from the stored session."""
    session_id = backend.new_session_id()
    user = f"user-{session_id}"
    memory_path = tmp_path / "memory"
    # The default min_score is measured for the default model; the toy embedder scores lower.
    async with VectorMemory(memory_path, embedder=HashedWordEmbeddings(), min_score=0.2) as memory:
        await memory.add("Ada's favourite city is Lisbon.", user_id=user)
        recall = MemweaveContextProvider(memory)
        client = ScriptedAFChatClient([WEATHER_CALL, "It is sunny.", "Lisbon."])
        agent = make_agent(client, [MemweaveHistoryProvider(backend.history), recall])
        session = agent.create_session(session_id=session_id)
        recall.bind_user(session, user)
        await agent.run("What is the weather in Paris?", session=session)
        await agent.run("Which city do I like most?", session=session)
        learned = await memory.count_memories(user_id=user)

    stored = await backend.history.list_messages(session_id)
    expected = [
        ("user", "What is the weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny in Paris"),
        ("assistant", "It is sunny."),
        ("user", "Which city do I like most?"),
        ("assistant", "Lisbon."),
    ]
    assert [(m.role, m.text) for m in stored] == expected
    assert len({m.id for m in stored}) == len(stored)
    assert stored[1].tool_calls[0].name == "get_weather"
    last = client.scripted.requests[-1].messages
    assert last[0].role == "system"
    assert "Lisbon" in last[0].text
    assert [(m.role, m.text) for m in last[1:]] == expected[:-1]
    assert learned == 1 + 4  # the seeded memory and the turn's user and assistant texts

    session_file = tmp_path / "session.json"
    session_file.write_text(json.dumps(session.to_dict()))
    args = {
        "url": backend.url,
        "session_file": str(session_file),
        "memory_path": str(memory_path),
        "replies": ["Yes, Lisbon."],
        "input": "Remind me of my favourite city.",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integrations._af_resume",
        json.dumps(args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    sent = json.loads(out.decode().strip().splitlines()[-1])["sent"]
    assert sent[0][0] == "system"
    assert "Lisbon" in sent[0][1]
    assert [tuple(pair) for pair in sent[1:]] == [
        *expected,
        ("user", "Remind me of my favourite city."),
    ]
    resumed = await backend.history.list_messages(session_id)
    assert [(m.role, m.text) for m in resumed] == [
        *expected,
        ("user", "Remind me of my favourite city."),
        ("assistant", "Yes, Lisbon."),
    ]
    assert AgentSession.from_dict(json.loads(session_file.read_text())).session_id == session_id


# -- context provider ---------------------------------------------------------------------------


class _Notes(ContextProvider):
    """A memweave context provider that adds one of each kind and counts turns in its state."""

    source_id = "notes"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, list[str], list[str]]] = []

    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        turns = session.state.get(self.source_id, {}).get("turns", 0)  # type: ignore[union-attr]
        return Context(
            instructions=f"Turn {turns}.",
            messages=(ChatMessage.user("Remember: tea, not coffee.", id=f"note-{turns}"),),
            tools=(
                {
                    "type": "function",
                    "function": {"name": "lookup", "parameters": {"type": "object"}},
                },
            ),
        )

    async def invoked(
        self,
        session: Session,
        request_messages: Sequence[ChatMessage],
        response_messages: Sequence[ChatMessage],
        error: BaseException | None = None,
    ) -> None:
        state: Any = session.state.setdefault(self.source_id, {})
        state["turns"] = state.get("turns", 0) + 1
        self.seen.append(
            (
                session.user_id,
                [m.text for m in request_messages],
                [m.text for m in response_messages],
            )
        )


async def test_context_provider_adds_context_and_learns() -> None:
    """Instructions, messages and tools reach the model; invoked gets the turn; state persists."""
    notes = _Notes()
    provider = MemweaveContextProvider(notes, user_id="ada")
    client = ScriptedAFChatClient(["first", "second"])
    agent = make_agent(client, [provider])
    session = agent.create_session()
    await agent.run("hello", session=session)
    session = AgentSession.from_dict(json.loads(json.dumps(session.to_dict())))
    await agent.run("again", session=session)

    first, second = client.scripted.requests
    assert first.messages[0].text == "Be brief.\nTurn 0."
    assert second.messages[0].text == "Be brief.\nTurn 1."
    assert [m.text for m in first.messages[1:]] == ["Remember: tea, not coffee.", "hello"]
    assert first.tool_names == ["get_weather", "lookup"]
    assert notes.seen[0] == ("ada", ["hello"], ["first"])


async def test_bind_user_scopes_the_session() -> None:
    """A user bound to a session wins over the provider's default user."""
    notes = _Notes()
    provider = MemweaveContextProvider(notes, user_id="default")
    agent = make_agent(ScriptedAFChatClient(["ok"]), [provider])
    session = agent.create_session()
    provider.bind_user(session, "ada")
    await agent.run("hi", session=session)
    assert notes.seen[0][0] == "ada"
    with pytest.raises(ConfigurationError):
        MemweaveContextProvider(object())  # type: ignore[arg-type]
