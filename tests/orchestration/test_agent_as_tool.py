"""`Agent.as_tool`: the tool's schema, sub-sessions linked to their caller (on SQLite and
Redis), concurrency, nesting, failures, retries, and streaming through a caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave.errors import BackendUnavailable
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    PARENT_KEY,
    SUB_SESSION_KEY,
    Agent,
    AgentEvent,
    ResponseEvent,
    TextDelta,
    sub_session_id,
    tool,
)
from memweave.orchestration._agent_tool import run_scoped_tool_calls
from memweave.orchestration.tools import TOOL_ERROR_KEY
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.session import MAX_SESSION_ID_LENGTH, validate_session_id
from memweave.testing import ScriptedChatClient
from tests.orchestration._backends import MakeHistory, make_history
from tests.orchestration._builders import assert_no_orphans, call, calls

__all__ = ["make_history"]


@tool
def lookup(city: str) -> str:
    """Look up a city's weather."""
    return f"sunny in {city}"


def worker(replies: Sequence[Any], name: str = "worker", **options: Any) -> Agent:
    return Agent(name, ScriptedChatClient(replies), description=f"The {name}.", **options)


def test_as_tool_takes_a_task_and_describes_the_agent() -> None:
    """The tool is named and described after the agent (or as given) and takes one `task`."""
    made = worker([]).as_tool()
    assert (made.name, made.description) == ("worker", "The worker.")
    assert made.parameters["required"] == ["task"]
    assert made.parameters["properties"]["task"]["type"] == "string"
    assert "task" in made.parameters["properties"]["task"]["description"]
    renamed = worker([]).as_tool(name="ask_worker", description="Ask it.")
    assert (renamed.name, renamed.description) == ("ask_worker", "Ask it.")


async def test_as_tool_stores_the_turn_once_in_a_linked_sub_session(
    make_history: MakeHistory,
) -> None:
    """The sub-agent's turn is stored in the caller's history under sub_session_id, linked both
    ways; its final text is the tool result; the agent's own history stays empty."""
    history = make_history("main")
    helper = worker([calls(call("lookup", "w1", city="Paris")), "Paris is sunny."], tools=[lookup])
    lead = Agent(
        "lead",
        ScriptedChatClient([calls(call("worker", "c1", task="Weather in Paris?")), "Sunny."]),
        tools=[helper.as_tool()],
        history=history,
    )
    reply = await lead.run("How is Paris?", session="s1")
    assert reply.text == "Sunny."
    stored = await history.list_messages("s1")
    result = stored[2]
    assert (result.role, result.text) == ("tool", "Paris is sunny.")
    sub_id = sub_session_id("s1", "worker", "c1")
    assert result.metadata[SUB_SESSION_KEY] == sub_id
    sub = await history.list_messages(sub_id)
    assert [(m.role, m.text) for m in sub] == [
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny in Paris"),
        ("assistant", "Paris is sunny."),
    ]
    assert sub[0].metadata[PARENT_KEY] == {
        "session_id": "s1",
        "tool_call_id": "c1",
        "agent": "lead",
    }
    assert sub[0].name == "lead"
    assert sorted(await history.list_sessions()) == sorted(["s1", sub_id])
    assert await helper.history.list_sessions() == []


async def test_as_tool_runs_parallel_calls_concurrently_in_call_order() -> None:
    """Two calls in one message run at the same time, each in its own sub-session, and their
    results are stored in call order even when the second ends first."""
    both_started = asyncio.Barrier(2)
    second_done = asyncio.Event()

    async def answer(messages: list[ChatMessage], tools: object, options: object) -> str:
        task = messages[-1].text
        async with asyncio.timeout(30):  # guards against a hang if the calls were sequential
            await both_started.wait()
        if task == "first":
            await second_done.wait()
        else:
            second_done.set()
        return f"done: {task}"

    history = InMemoryChatHistoryProvider()
    helper = Agent("worker", ScriptedChatClient(answer))
    lead = Agent(
        "lead",
        ScriptedChatClient(
            [calls(call("worker", "c1", task="first"), call("worker", "c2", task="second")), "ok"]
        ),
        tools=[helper.as_tool()],
        history=history,
    )
    await lead.run("go", session="s1")
    stored = await history.list_messages("s1")
    assert [m.text for m in stored if m.role == "tool"] == ["done: first", "done: second"]
    assert_no_orphans(stored)
    for call_id, task in (("c1", "first"), ("c2", "second")):
        sub = await history.list_messages(sub_session_id("s1", "worker", call_id))
        assert [m.text for m in sub] == [task, f"done: {task}"]


async def test_as_tool_nests_to_depth_three(make_history: MakeHistory) -> None:
    """An agent tool calling an agent tool calling an agent tool: each turn is stored in a
    sub-session of its caller's, linked, and the answer travels back up."""
    history = make_history("main")
    leaf = worker(
        [calls(call("lookup", "l1", city="Oslo")), "Oslo: sunny."], "leaf", tools=[lookup]
    )
    middle = worker(
        [calls(call("leaf", "m1", task="Oslo weather")), "Leaf says: Oslo: sunny."],
        "middle",
        tools=[leaf.as_tool()],
    )
    top = worker(
        [calls(call("middle", "t1", task="Ask the leaf")), "Middle says it is sunny."],
        "top",
        tools=[middle.as_tool()],
    )
    lead = Agent(
        "lead",
        ScriptedChatClient([calls(call("top", "c1", task="Weather?")), "Sunny in Oslo."]),
        tools=[top.as_tool()],
        history=history,
    )
    reply = await lead.run("Weather in Oslo?", session="root")
    assert reply.text == "Sunny in Oslo."
    parent = "root"
    answers = []
    for name, call_id in (("top", "c1"), ("middle", "t1"), ("leaf", "m1")):
        child = sub_session_id(parent, name, call_id)
        parent_messages = await history.list_messages(parent)
        result = next(m for m in parent_messages if m.tool_call_id == call_id)
        assert result.metadata[SUB_SESSION_KEY] == child
        messages = await history.list_messages(child)
        assert messages[0].metadata[PARENT_KEY]["session_id"] == parent  # type: ignore[index]
        assert_no_orphans(messages)
        answers.append(messages[-1].text)
        parent = child
    assert answers == ["Middle says it is sunny.", "Leaf says: Oslo: sunny.", "Oslo: sunny."]
    assert len(await history.list_sessions()) == 4


async def test_as_tool_failure_becomes_a_tool_error_for_the_caller() -> None:
    """A failing sub-agent gives the caller an error result (linked to the sub-session that
    holds its input), and the caller's turn goes on."""
    history = InMemoryChatHistoryProvider()
    lead = Agent(
        "lead",
        ScriptedChatClient([calls(call("worker", "c1", task="do it")), "It failed, sorry."]),
        tools=[worker([]).as_tool()],
        history=history,
    )
    reply = await lead.run("go", session="s1")
    assert reply.text == "It failed, sorry."
    result = (await history.list_messages("s1"))[2]
    assert result.metadata[TOOL_ERROR_KEY] == "tool_raised"
    assert "ScriptExhausted" in result.text
    sub = await history.list_messages(str(result.metadata[SUB_SESSION_KEY]))
    assert [(m.role, m.text) for m in sub] == [("user", "do it")]


class CrashingHistory(InMemoryChatHistoryProvider):
    """An in-memory history whose writes to the sessions in `down` fail, as a crash between the
    sub-agent's write and its caller's would leave things."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()

    async def add_messages(self, session_id: str, messages: Any) -> None:
        if session_id in self.down:
            raise BackendUnavailable("injected failure")
        await super().add_messages(session_id, messages)


async def test_as_tool_retried_call_returns_the_stored_answer_without_rerunning() -> None:
    """Re-running a caller's turn whose sub-agent already answered the same call stores no
    second copy of the sub-turn and does not call the sub-agent's model again."""
    history = CrashingHistory()
    history.down.add("s1")
    script = [calls(call("worker", "c1", task="count")), "Three."]
    first = Agent(
        "lead",
        ScriptedChatClient(script),
        tools=[worker(["Three apples."]).as_tool()],
        history=history,
    )
    with pytest.raises(BackendUnavailable):
        await first.run(ChatMessage.user("How many?", id="q1"), session="s1")
    sub_id = sub_session_id("s1", "worker", "c1")
    stored_once = await history.list_messages(sub_id)
    assert [m.text for m in stored_once] == ["count", "Three apples."]
    history.down.clear()
    idle_worker = worker([])  # a model call would raise ScriptExhausted
    retry = Agent(
        "lead", ScriptedChatClient(script), tools=[idle_worker.as_tool()], history=history
    )
    await retry.run(ChatMessage.user("How many?", id="q1"), session="s1")
    assert idle_worker.client.requests == []  # type: ignore[attr-defined]
    assert await history.list_messages(sub_id) == stored_once
    result = (await history.list_messages("s1"))[2]
    assert (result.text, TOOL_ERROR_KEY in result.metadata) == ("Three apples.", False)


async def test_as_tool_retried_call_finishes_an_interrupted_sub_turn() -> None:
    """A sub-turn that failed after a complete tool round is finished by the retried call,
    without storing or sending its input twice."""
    history = InMemoryChatHistoryProvider()
    broken = worker([calls(call("lookup", "w1", city="Rome"))], tools=[lookup])
    lead_script = [
        calls(call("worker", "c1", task="Rome?")),
        "Failed.",
        calls(call("worker", "c1", task="Rome?")),
        "Sunny.",
    ]
    lead_client = ScriptedChatClient(lead_script)
    await Agent("lead", lead_client, tools=[broken.as_tool()], history=history).run(
        "Rome?", session="s1"
    )
    sub_id = sub_session_id("s1", "worker", "c1")
    assert [m.role for m in await history.list_messages(sub_id)] == ["user", "assistant", "tool"]
    fixed = worker(["Rome is sunny."], tools=[lookup])
    lead = Agent("lead", lead_client, tools=[fixed.as_tool()], history=history)
    reply = await lead.run("Try again.", session="s1")
    assert reply.text == "Sunny."
    sent = fixed.client.requests[0].messages  # type: ignore[attr-defined]
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    sub = await history.list_messages(sub_id)
    assert [(m.role, m.text) for m in sub][-1] == ("assistant", "Rome is sunny.")
    assert [m.role for m in sub].count("user") == 1
    assert_no_orphans(sub)


async def test_as_tool_outside_an_agent_turn_uses_a_new_session_of_its_own() -> None:
    """Invoked directly, the tool runs the agent in a fresh session of the agent's history."""
    helper = worker(["Hello."])
    assert await helper.as_tool().invoke({"task": "Say hello"}) == "Hello."
    sessions = await helper.history.list_sessions()
    assert len(sessions) == 1
    assert [m.text for m in await helper.history.list_messages(sessions[0])] == [
        "Say hello",
        "Hello.",
    ]


async def test_as_tool_streams_the_sub_agent_into_the_caller_stream() -> None:
    """A streaming caller gets the sub-agent's deltas, tagged with its agent and sub-session,
    and a single ResponseEvent, its own, last."""
    helper = worker(["Nested answer."])
    lead = Agent(
        "lead",
        ScriptedChatClient([calls(call("worker", "c1", task="go")), "Top answer."]),
        tools=[helper.as_tool()],
    )
    events = [event async for event in lead.run_stream("hi", session="s1")]
    nested = "".join(e.text for e in events if isinstance(e, TextDelta) and e.agent == "worker")
    assert nested == "Nested answer."
    sub_id = sub_session_id("s1", "worker", "c1")
    assert {e.session_id for e in events if e.agent == "worker"} == {sub_id}
    responses = [e for e in events if isinstance(e, ResponseEvent)]
    assert responses == [events[-1]]
    assert responses[0].agent == "lead"


async def test_as_tool_asks_the_callers_approve_about_nested_calls() -> None:
    """The caller's `approve` callback decides the sub-agent's approval-needing calls."""

    @tool(approval="always")
    def refund(order: str) -> str:
        """Refund an order."""
        return f"refunded {order}"

    asked: list[ToolCall] = []

    def approve(request: ToolCall) -> bool:
        asked.append(request)
        return True

    helper = worker([calls(call("refund", "w1", order="A7")), "Refunded."], tools=[refund])
    history = InMemoryChatHistoryProvider()
    lead = Agent(
        "lead",
        ScriptedChatClient([calls(call("worker", "c1", task="refund A7")), "Done."]),
        tools=[helper.as_tool()],
        history=history,
    )
    await lead.run("Refund A7", session="s1", approve=approve)
    assert [c.name for c in asked] == ["refund"]
    sub = await history.list_messages(sub_session_id("s1", "worker", "c1"))
    assert sub[2].text == "refunded A7"


async def test_run_scoped_tool_calls_gives_orchestrators_linked_sub_sessions() -> None:
    """Tool calls run through run_scoped_tool_calls store an agent tool's turn in a sub-session
    of the given history and session, and report events to `emit`."""
    history = InMemoryChatHistoryProvider()
    helper = worker(["Found it."])
    seen: list[AgentEvent] = []
    results = await run_scoped_tool_calls(
        [call("worker", "c9", task="find it"), call("lookup", "c10", city="Rome")],
        {"worker": helper.as_tool(), "lookup": lookup},
        agent="engine",
        session_id="flow-1",
        history=history,
        emit=seen.append,
    )
    assert [r.text for r in results] == ["Found it.", "sunny in Rome"]
    sub_id = sub_session_id("flow-1", "worker", "c9")
    assert results[0].metadata[SUB_SESSION_KEY] == sub_id
    assert [m.text for m in await history.list_messages(sub_id)] == ["find it", "Found it."]
    assert {e.session_id for e in seen} == {"flow-1", sub_id}
    assert await helper.history.list_sessions() == []


valid_ids = st.text(min_size=1, max_size=MAX_SESSION_ID_LENGTH).filter(lambda text: _is_valid(text))


def _is_valid(session_id: str) -> bool:
    try:
        validate_session_id(session_id)
    except ValueError:
        return False
    return True


@given(first=st.tuples(valid_ids, valid_ids), second=st.tuples(valid_ids, valid_ids))
def test_sub_session_id_is_stable_storable_and_distinct(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """A sub-session id is the same on every call, storable on every backend whatever the
    caller's ids hold, and different for a different session or call id."""
    made = sub_session_id(first[0], "worker", first[1])
    assert made == sub_session_id(first[0], "worker", first[1])
    assert validate_session_id(made) == made
    if first != second:
        assert made != sub_session_id(second[0], "worker", second[1])
