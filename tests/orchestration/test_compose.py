"""Nested teams: a workflow as a participant or step of another, with linked sub-sessions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from memweave.errors import ConfigurationError, InvalidArgument
from memweave.orchestration import (
    SUB_SESSION_KEY,
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    Sequential,
    Team,
    ToolApprovalRequest,
    UserInputRequest,
    tool,
)
from memweave.orchestration._team import TEAM_INPUT_KEY
from memweave.providers.base import ChatHistoryProvider
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import assert_no_orphans
from tests.orchestration._patterns import (
    Backend,
    backend,
    build_team,
    call,
    calls,
    client_of,
    collect,
    kinds,
    open_backend,
    run_phase,
    scripted,
)

__all__ = ["backend"]


def pipeline(history: ChatHistoryProvider, *replies: str) -> Sequential:
    """A two-agent `Sequential`: a drafter and a reviewer."""
    return Sequential(
        [scripted("drafter", [replies[0]]), scripted("reviewer", [replies[1]])], history=history
    )


async def test_team_answer_is_stored_once_and_links_its_sub_session(backend: Backend) -> None:
    """A team's turns stay in its sub-session; the parent stores only its answer, linked."""
    writers = Team(pipeline(backend.history, "draft", "reviewed draft"), name="writers")
    boss = scripted("boss", [calls(call("handoff_to_writers", "d1", task="write a haiku")), "Ok."])
    workflow = (
        HandoffBuilder("top", [boss, writers], history=backend.history)
        .with_supervisor(boss)
        .with_checkpointing(backend.store)
        .build()
    )
    events = await collect(workflow.run("A haiku please."))
    assert [(e.agent, e.team) for e in events if isinstance(e, AgentMessage)] == [
        ("boss", ()),
        ("drafter", ("writers",)),
        ("reviewer", ("writers",)),
        ("writers", ()),
        ("boss", ()),
    ]
    parent = await backend.history.list_messages(workflow.session_id)
    answer = next(m for m in parent if m.name == "writers")
    assert answer.text == "reviewed draft"
    sub = answer.metadata[SUB_SESSION_KEY]
    assert sub == writers.session_for(workflow.session_id)
    inner = await backend.history.list_messages(str(sub))
    assert [(m.role, m.text) for m in inner] == [
        ("user", "write a haiku"),
        ("assistant", "draft"),
        ("assistant", "reviewed draft"),
    ]
    assert inner[0].metadata[TEAM_INPUT_KEY]["session_id"] == workflow.session_id
    assert not any(m.text == "draft" for m in parent)
    assert_no_orphans([m for m in parent if m.role != "system"])


async def test_team_receives_the_users_message_without_a_task() -> None:
    """Handed over without a task, a team works on the user's newest message."""
    x = scripted("x", ["x answered"])
    inner = HandoffBuilder("inner", [x, scripted("y", [])]).build()
    front = scripted("front", [calls(call("handoff_to_crew", "h1"))])
    workflow = HandoffBuilder("outer", [front, Team(inner, name="crew")]).build()
    events = await collect(workflow.run("Fix my bike."))
    assert isinstance(events[-1], UserInputRequest)
    assert events[-1].agent == "crew"
    assert client_of(x).requests[0].messages[-1].text == "Fix my bike."


async def test_team_gets_the_users_answer_as_its_next_task() -> None:
    """When the user answers a team's question, the team goes on in its sub-session."""
    x = scripted("x", ["Which bike?", "Fixed the red one."])
    inner = HandoffBuilder("inner", [x, scripted("y", [])]).build()
    workflow = HandoffBuilder("outer", [Team(inner, name="crew"), scripted("z", [])]).build()
    request = (await collect(workflow.run("Fix my bike.")))[-1]
    assert isinstance(request, UserInputRequest)
    events = await collect(workflow.run(responses={request.request_id: "The red one."}))
    assert [e.text for e in events if isinstance(e, AgentMessage) and not e.team] == [
        "Fixed the red one."
    ]
    assert [m.text for m in client_of(x).requests[1].messages if m.role == "user"] == [
        "Fix my bike.",
        "The red one.",
    ]


async def test_team_step_retried_after_a_failure_does_not_give_its_task_twice() -> None:
    """A team turn that failed part way goes on from its stored turn when run again."""
    attempts: list[int] = []

    def flaky(messages: list[Any], tools: Any, options: Any) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("model down")
        return "checked"

    lead = scripted("lead", [calls(call("handoff_to_checker", "c1", task="check"))])
    crew = HandoffBuilder("crew", [lead, Agent("checker", ScriptedChatClient(flaky))]).build()
    team = Team(crew, name="crew")
    workflow = HandoffBuilder("outer", [team, scripted("front", [])]).build()
    with pytest.raises(RuntimeError, match="model down"):
        await collect(workflow.run("Check it."))
    events = await collect(workflow.run())
    assert kinds(events)[-1] == "UserInputRequest"
    inner = await crew.history.list_messages(team.session_for(workflow.session_id))
    assert [m.text for m in inner if m.role == "user"] == ["Check it."]
    assert inner[-1].text == "checked"
    assert len(client_of(lead).requests) == 1


async def test_sequential_is_a_step_of_a_sequential(backend: Backend) -> None:
    """A `Sequential` team as a step gets the previous answer and returns its last one."""
    editors = Team(pipeline(backend.history, "edited", "proofread"), name="editors")
    outer = Sequential([scripted("writer", ["first draft"]), editors], history=backend.history)
    result = await outer.run("Write.", session=f"seq-{uuid.uuid4().hex}")
    assert result.text == "proofread"
    assert [m.name for m in result.messages] == ["writer", "editors"]
    sub = editors.session_for(result.session_id)
    assert [m.text for m in await backend.history.list_messages(sub)] == [
        "first draft",
        "edited",
        "proofread",
    ]


async def test_handoff_workflow_is_a_step_of_a_sequential() -> None:
    """A handoff team as a `Sequential` step answers with its last agent's text."""
    crew = HandoffBuilder(
        "crew", [scripted("a", [calls(call("handoff_to_b"))]), scripted("b", ["b did it"])]
    ).build()
    outer = Sequential([scripted("planner", ["plan"]), Team(crew, name="crew")])
    result = await outer.run("Go.")
    assert result.text == "b did it"


async def test_team_needing_approval_in_a_sequential_raises() -> None:
    """A `Sequential` cannot ask a person, so a team stopping for approval is an error."""

    @tool(approval="always")
    def deploy() -> str:
        """Deploy."""
        return "deployed"

    crew = HandoffBuilder(
        "crew", [scripted("a", [calls(call("deploy", "d1"))], tools=[deploy]), scripted("b", [])]
    ).build()
    outer = Sequential([Team(crew, name="crew")])
    with pytest.raises(ConfigurationError, match="stopped for a tool approval"):
        await outer.run("Deploy.")


def test_team_cannot_be_a_handoff_source() -> None:
    """A team answers without tools, so routes from it are refused."""
    team = Team(Sequential([scripted("a", [])]), name="t")
    with pytest.raises(InvalidArgument, match="cannot hand off"):
        HandoffBuilder("w", [team, scripted("b", [])]).add_handoff(team, "b")
    with pytest.raises(InvalidArgument, match="team name"):
        Team(Sequential([scripted("a", [])]), name="bad name")


async def test_team_approval_pauses_the_parent_under_the_teams_name(backend: Backend) -> None:
    """A tool approval inside a team pauses the parent; answering it finishes the team's turn."""
    workflow = build_team(backend.history, backend.store)
    events = await collect(workflow.run("Tell me about tea."))
    request = events[-1]
    assert isinstance(request, ToolApprovalRequest)
    assert request.agent == "research"
    assert [e.team for e in events if isinstance(e, Handoff)] == [(), ("research",)]
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert isinstance(events[-1], UserInputRequest)
    assert events[-1].agent == "top"
    stored = await backend.history.list_messages(workflow.session_id)
    assert stored[-1].text == "Final: Summary: Found results for tea."


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))]
)
async def test_nested_team_resumes_in_a_new_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A parent paused at a nested team's tool approval finishes in another process."""
    async with open_backend(kind, request, tmp_path) as opened:
        session_id = f"team-{uuid.uuid4().hex}"
        first = run_phase("team", "start", opened.url, session_id, opened.prefix)
        assert first["events"][-1] == "ToolApprovalRequest"
        second = run_phase("team", "finish", opened.url, session_id, opened.prefix)
    assert second["request_agent"] == "research"
    assert second["events"][-1] == "UserInputRequest"
    parent = second["stored"][session_id]
    assert parent[-1] == ["assistant", "top", "Final: Summary: Found results for tea."]
    inner = second["stored"][f"{session_id}/research"]
    assert [text for role, _, text in inner if role == "user"] == ["research tea"]
    assert ["tool", None, "results for tea"] in inner


async def test_agent_tool_in_a_workflow_stores_its_turn_in_the_workflows_history() -> None:
    """An `Agent.as_tool()` tool of a participant stores its turn in a sub-session of the
    workflow's history, linked from its result."""
    helper = scripted("helper", ["helped"])
    a = scripted("a", [calls(call("helper", "c1", task="help")), "done"], tools=[helper.as_tool()])
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).build()
    await collect(workflow.run("go"))
    stored = await workflow.history.list_messages(workflow.session_id)
    result = next(m for m in stored if m.role == "tool")
    assert result.text == "helped"
    sub = str(result.metadata[SUB_SESSION_KEY])
    assert [m.text for m in await workflow.history.list_messages(sub)][-1] == "helped"
