"""Explicit ends and self-routes: `add_handoff(agent, END)` and `add_handoff(agent, agent)`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from memweave.errors import InvalidArgument
from memweave.orchestration import (
    END,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    UserInputRequest,
    WorkflowOutput,
    tool,
)
from memweave.orchestration.handoff import END_TOOL
from memweave.orchestration.tools import TOOL_ERROR_KEY
from tests.orchestration._builders import assert_no_orphans
from tests.orchestration._patterns import (
    Backend,
    backend,
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


async def test_end_route_ends_the_run_with_the_agents_answer(backend: Backend) -> None:
    """An agent with a route to END ends the run instead of asking the user; its text is the
    answer."""
    a = scripted("a", [calls(call(END_TOOL, "e1"), text="The answer is 42.")])
    b = scripted("b", [])
    workflow = (
        HandoffBuilder("w", [a, b], history=backend.history)
        .add_handoff(a, [b, END])
        .with_checkpointing(backend.store)
        .build()
    )
    assert workflow.routes() == {"a": ["b", END], "b": []}
    events = await collect(workflow.run("What is six times seven?"))
    assert kinds(events) == ["AgentMessage", "WorkflowOutput"]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert (output.reason, output.answer) == ("ended", "The answer is 42.")
    assert output.detail == "a ended the run"
    assert_no_orphans(output.conversation)
    latest = await backend.store.get_checkpoint("w", workflow.session_id)
    assert latest is not None
    assert latest.status == "idle"


async def test_end_run_answer_argument_is_stored_as_the_agents_message() -> None:
    """An `end_run(answer=...)` call without text stores the answer as the agent's message,
    so the other agents see it later."""
    a = scripted("a", [calls(call(END_TOOL, "e1", answer="Paris."))])
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).add_handoff(a, END).build()
    events = await collect(workflow.run("Capital of France?"))
    assert kinds(events) == ["AgentMessage", "AgentMessage", "WorkflowOutput"]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.answer == "Paris."
    assert [(m.role, m.text) for m in output.conversation[-2:]] == [
        ("tool", "Run ended."),
        ("assistant", "Paris."),
    ]
    assert output.conversation[-1].name == "a"


async def test_end_after_a_handoff_in_one_message_is_not_carried_out() -> None:
    """The first route of a message wins: a handoff then END hands off, and END is refused."""
    a = scripted("a", [calls(call("handoff_to_b", "h1"), call(END_TOOL, "e1"))])
    b = scripted("b", ["b here"])
    workflow = HandoffBuilder("w", [a, b]).add_handoff(a, [b, END]).build()
    events = await collect(workflow.run("go"))
    assert kinds(events) == ["AgentMessage", "Handoff", "AgentMessage", "UserInputRequest"]
    stored = await workflow.history.list_messages(workflow.session_id)
    refused = next(m for m in stored if m.tool_call_id == "e1")
    assert refused.metadata[TOOL_ERROR_KEY] == "not_run"


async def test_end_stops_the_other_calls_of_its_message() -> None:
    """A call needing approval in the message that ends the run is answered as not run."""

    @tool(approval="always")
    def wipe() -> str:
        """Wipe everything."""
        return "wiped"

    a = scripted("a", [calls(call("wipe", "w1"), call(END_TOOL, "e1"), text="Bye.")], tools=[wipe])
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).add_handoff(a, END).build()
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ended"
    results = {m.tool_call_id: m for m in output.conversation if m.role == "tool"}
    assert results["w1"].metadata[TOOL_ERROR_KEY] == "not_run"
    assert await workflow.pending_requests() == []


def test_add_handoff_to_end_refuses_an_own_tool_named_end_run() -> None:
    """`end_run` is reserved for agents that may end the run."""

    @tool(name=END_TOOL)
    def mine() -> str:
        """An own tool."""
        return ""

    a = scripted("a", [], tools=[mine])
    with pytest.raises(InvalidArgument, match="end_run"):
        HandoffBuilder("w", [a, scripted("b", [])]).add_handoff(a, END)


async def test_self_route_gives_the_agent_another_step_with_its_task(backend: Backend) -> None:
    """An agent allowed to route to itself takes another step, with the task in a note."""
    planner = scripted(
        "planner",
        [
            calls(call("handoff_to_planner", "s1", task="step 2")),
            calls(call("handoff_to_planner", "s2", task="step 3")),
            "All steps done.",
        ],
    )
    workflow = (
        HandoffBuilder("w", [planner, scripted("other", [])], history=backend.history)
        .add_handoff(planner, planner)
        .with_checkpointing(backend.store)
        .build()
    )
    assert workflow.routes()["planner"] == ["planner"]
    events = await collect(workflow.run("Plan it."))
    assert [(e.source, e.target) for e in events if isinstance(e, Handoff)] == [
        ("planner", "planner"),
        ("planner", "planner"),
    ]
    assert isinstance(events[-1], UserInputRequest)
    sent = client_of(planner).requests[2].messages[-1]
    assert sent.role == "system"
    assert "routed the conversation back to yourself" in sent.text
    assert "Task: step 3" in sent.text


async def test_self_route_repeating_itself_is_stopped_as_ping_pong() -> None:
    """A self-route giving itself exactly the same task again makes no progress."""
    a = scripted(
        "a", [calls(call("handoff_to_a", task="again")), calls(call("handoff_to_a", task="again"))]
    )
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).add_handoff(a, a).build()
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ping_pong"
    assert "give itself the same task again" in output.detail
    assert sum(isinstance(e, AgentMessage) for e in events) == 2


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))]
)
async def test_self_route_and_end_resume_in_a_new_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An agent that routed to itself and paused at a tool approval finishes in another
    process, ending the run with its answer."""
    async with open_backend(kind, request, tmp_path) as opened:
        session_id = f"loop-{uuid.uuid4().hex}"
        first = run_phase("loop", "start", opened.url, session_id, opened.prefix)
        assert first["events"] == [
            "AgentMessage",
            "Handoff",
            "AgentMessage",
            "ToolApprovalRequest",
        ]
        second = run_phase("loop", "finish", opened.url, session_id, opened.prefix)
    assert second["events"] == ["AgentMessage", "AgentMessage", "WorkflowOutput"]
    assert second["answer"] == "Done: deployed to staging."
    stored = second["stored"][session_id]
    assert stored[-1] == ["assistant", "looper", "Done: deployed to staging."]
