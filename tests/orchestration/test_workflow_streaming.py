"""Handoff workflows with `run(..., stream=True)`: deltas as events, the same stored history."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memweave.messages import ChatMessage
from memweave.orchestration import (
    Agent,
    AgentMessage,
    HandoffBuilder,
    HandoffWorkflow,
    Team,
    TextDelta,
    ToolCallDelta,
    WorkflowEvent,
    tool,
)
from memweave.providers.base import ChatHistoryProvider
from memweave.testing import ScriptedChatClient
from tests.orchestration._patterns import Backend, call, calls, collect, open_backend


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A history and checkpoint store on a SQLite file or on Redis."""
    async with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@tool
def lookup(city: str) -> str:
    """Look up the weather."""
    return f"sunny in {city}"


def boss_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    if messages[-1].role == "user":
        return calls(call("handoff_to_weather", "d1", task="Paris"), text="Asking.")
    return "Sunny."


def weather_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    if messages[-1].role == "tool":
        return "It is sunny in Paris."
    return calls(call("lookup", "l1", city="Paris"))


def build(history: ChatHistoryProvider | None = None, **options: Any) -> HandoffWorkflow:
    """A supervisor delegating to a worker that calls a tool."""
    boss = Agent("boss", ScriptedChatClient(boss_model))
    weather = Agent("weather", ScriptedChatClient(weather_model), tools=[lookup])
    builder = HandoffBuilder("w", [boss, weather], history=history).with_supervisor(boss)
    if "store" in options:
        builder.with_checkpointing(options["store"])
    return builder.build()


def shape(messages: list[ChatMessage]) -> list[tuple[Any, ...]]:
    """What is stored, without the generated ids and times."""
    return [(m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.metadata) for m in messages]


async def test_run_stream_yields_text_deltas_before_each_agent_message() -> None:
    """The deltas of a step add up to the text of the `AgentMessage` that follows them."""
    events = await collect(build().run("Weather in Paris?", stream=True))
    pending: list[str] = []
    checked = 0
    for event in events:
        if isinstance(event, TextDelta):
            pending.append(event.text)
        elif isinstance(event, AgentMessage):
            assert "".join(pending) == event.text
            pending, checked = [], checked + 1
    assert checked == 4
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert not pending


async def test_run_stream_stores_the_same_history_as_run(backend: Backend) -> None:
    """A streamed run stores exactly the messages an unstreamed run stores."""
    plain = build(backend.history)
    await collect(plain.run("Weather in Paris?", session="plain"))
    streamed = build(backend.history)
    await collect(streamed.run("Weather in Paris?", session="streamed", stream=True))
    assert shape(await backend.history.list_messages("streamed")) == shape(
        await backend.history.list_messages("plain")
    )


async def test_run_stream_stopped_mid_reply_stores_no_part_of_the_step(backend: Backend) -> None:
    """A consumer that stops at the first delta leaves the input stored and no half step;
    the next `run()` makes the step again."""
    workflow = build(backend.history, store=backend.store)
    events = workflow.run("Weather in Paris?", session="s", stream=True)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                break
    stored = await backend.history.list_messages("s")
    assert [m.role for m in stored] == ["user"]
    rest = await collect(workflow.run(session="s"))
    assert [type(e).__name__ for e in rest][:2] == ["AgentMessage", "Handoff"]


async def test_run_stream_forwards_the_deltas_of_a_nested_team() -> None:
    """A team's agents stream too; their deltas carry the team's sub-session id."""
    inner = HandoffBuilder(
        "inner",
        [Agent("x", ScriptedChatClient(["inner words"])), Agent("y", ScriptedChatClient([]))],
    ).build()
    team = Team(inner, name="crew")
    workflow = HandoffBuilder("outer", [team, Agent("z", ScriptedChatClient([]))]).build()
    events: list[WorkflowEvent] = await collect(workflow.run("Go.", session="s", stream=True))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(d.text for d in deltas) == "inner words"
    assert {d.session_id for d in deltas} == {team.session_for("s")}
