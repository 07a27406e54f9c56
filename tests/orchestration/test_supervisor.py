"""The supervisor pattern: workers return by themselves, repeated tasks, fan-out, resume."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from memweave.errors import InvalidArgument
from memweave.orchestration import (
    END,
    Handoff,
    HandoffBuilder,
    UserInputRequest,
    WorkflowOutput,
    tool,
)
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


def delegate(worker: str, task: str, call_id: str | None = None) -> Any:
    return call(f"handoff_to_{worker}", call_id, task=task)


def handoffs(events: list[Any]) -> list[tuple[str, str, bool]]:
    return [(e.source, e.target, e.automatic) for e in events if isinstance(e, Handoff)]


async def test_with_supervisor_returns_control_when_a_worker_answers(backend: Backend) -> None:
    """A worker that answers hands control back to the supervisor without any handoff tool."""
    boss = scripted("boss", [calls(delegate("math", "2+2")), "Four."])
    math = scripted("math", ["4"])
    workflow = (
        HandoffBuilder("sup", [boss, math], history=backend.history)
        .with_supervisor(boss)
        .with_checkpointing(backend.store)
        .build()
    )
    events = await collect(workflow.run("What is 2+2?"))
    assert handoffs(events) == [("boss", "math", False), ("math", "boss", True)]
    assert isinstance(events[-1], UserInputRequest)
    assert events[-1].agent == "boss"
    assert client_of(math).requests[0].tool_names == []
    assert workflow.routes() == {"boss": ["math"], "math": []}
    assert workflow.supervisors() == {"math": "boss"}
    assert_no_orphans(
        [m for m in await backend.history.list_messages(workflow.session_id) if m.role != "system"]
    )


async def test_with_supervisor_gives_one_worker_several_tasks_in_one_user_turn() -> None:
    """The ping-pong guard lets a supervisor send the same worker new tasks in one turn."""
    boss = scripted(
        "boss",
        [calls(delegate("math", "2+2")), calls(delegate("math", "3+3")), "4 and 6."],
    )
    math = scripted("math", ["4", "6"])
    workflow = HandoffBuilder("sup", [boss, math]).with_supervisor(boss).build()
    events = await collect(workflow.run("2+2 and 3+3?"))
    assert handoffs(events) == [
        ("boss", "math", False),
        ("math", "boss", True),
        ("boss", "math", False),
        ("math", "boss", True),
    ]
    assert kinds(events)[-1] == "UserInputRequest"


async def test_with_supervisor_stops_a_delegation_without_progress() -> None:
    """Giving a worker the very same task again, with nothing changed, ends the run."""
    boss = scripted("boss", [calls(delegate("math", "2+2")), calls(delegate("math", "2+2"))])
    math = scripted("math", ["4"])
    workflow = HandoffBuilder("sup", [boss, math]).with_supervisor(boss).build()
    events = await collect(workflow.run("2+2?"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ping_pong"
    assert "same task again" in output.detail
    assert output.conversation[-1].metadata[TOOL_ERROR_KEY] == "refused"
    assert len(client_of(math).requests) == 1


async def test_with_supervisor_progress_counts_new_text_with_the_same_task() -> None:
    """A repeated task with new text written beside it is progress, not a bounce."""
    boss = scripted(
        "boss",
        [
            calls(delegate("math", "check")),
            calls(delegate("math", "check"), text="The first answer looked wrong."),
            "Done.",
        ],
    )
    math = scripted("math", ["5", "4"])
    workflow = HandoffBuilder("sup", [boss, math]).with_supervisor(boss).build()
    events = await collect(workflow.run("2+2?"))
    assert kinds(events)[-1] == "UserInputRequest"
    assert len(client_of(math).requests) == 2


async def test_with_supervisor_guard_restarts_after_user_input() -> None:
    """The same task after a new user message is a new delegation."""
    boss = scripted(
        "boss", [calls(delegate("math", "2+2")), "4.", calls(delegate("math", "2+2")), "Still 4."]
    )
    math = scripted("math", ["4", "4"])
    workflow = HandoffBuilder("sup", [boss, math]).with_supervisor(boss).build()
    request = (await collect(workflow.run("2+2?")))[-1]
    assert isinstance(request, UserInputRequest)
    events = await collect(workflow.run(responses={request.request_id: "Again please."}))
    assert kinds(events)[-1] == "UserInputRequest"
    assert len(client_of(math).requests) == 2


async def test_fan_out_runs_every_delegated_worker_in_call_order(backend: Backend) -> None:
    """Two delegations in one supervisor message both run, one after the other, and control
    returns to the supervisor once, after the last."""
    boss = scripted(
        "boss",
        [calls(delegate("math", "2+2", "d1"), delegate("history", "first emperor", "d2")), "OK."],
    )
    math = scripted("math", ["4"])
    history_tutor = scripted("history", ["Augustus"])
    workflow = (
        HandoffBuilder("sup", [boss, math, history_tutor], history=backend.history)
        .with_supervisor(boss)
        .with_checkpointing(backend.store)
        .build()
    )
    events = await collect(workflow.run("Two questions."))
    assert handoffs(events) == [
        ("boss", "math", False),
        ("boss", "history", True),
        ("history", "boss", True),
    ]
    stored = await backend.history.list_messages(workflow.session_id)
    results = {m.tool_call_id: m.text for m in stored if m.role == "tool"}
    assert results == {"d1": "Handed off to math.", "d2": "Handed off to history, after math."}
    sent = client_of(history_tutor).requests[0].messages
    assert "Task: first emperor" in sent[-1].text
    assert [m.text for m in client_of(boss).requests[1].messages[-3:-1]] == ["4", "Augustus"]
    assert_no_orphans([m for m in stored if m.role != "system"])


async def test_fan_out_refuses_the_same_task_twice_in_one_message() -> None:
    """A message giving one worker the same task twice gets a tool error for the second."""
    boss = scripted(
        "boss", [calls(delegate("math", "2+2", "d1"), delegate("math", "2+2", "d2")), "Fine."]
    )
    math = scripted("math", ["4"])
    workflow = HandoffBuilder("sup", [boss, math]).with_supervisor(boss).build()
    events = await collect(workflow.run("2+2?"))
    assert handoffs(events) == [("boss", "math", False), ("math", "boss", True)]
    stored = await workflow.history.list_messages(workflow.session_id)
    second = next(m for m in stored if m.tool_call_id == "d2")
    assert second.metadata[TOOL_ERROR_KEY] == "refused"
    assert "same task already" in second.text


async def test_two_handoffs_outside_a_supervisor_answer_the_second_with_a_tool_error() -> None:
    """Where targets do not return, a message hands off once; the second call is told so."""
    a = scripted("a", [calls(call("handoff_to_b", "h1"), call("handoff_to_c", "h2"))])
    b, c = scripted("b", ["b here"]), scripted("c", [])
    workflow = HandoffBuilder("w", [a, b, c]).build()
    events = await collect(workflow.run("go"))
    assert [e.target for e in events if isinstance(e, Handoff)] == ["b"]
    stored = await workflow.history.list_messages(workflow.session_id)
    second = next(m for m in stored if m.tool_call_id == "h2")
    assert second.metadata[TOOL_ERROR_KEY] == "not_run"
    assert "hands the conversation to one agent, and this one went to b" in second.text
    assert client_of(c).requests == []


async def test_max_handoffs_counts_delegations_not_returns() -> None:
    """With a limit of 2, two delegations run (their returns not counted); a third stops."""
    boss = scripted(
        "boss",
        [calls(delegate("w", "a")), calls(delegate("w", "b")), calls(delegate("w", "c"))],
    )
    worker = scripted("w", ["A", "B"])
    workflow = (
        HandoffBuilder("sup", [boss, worker]).with_supervisor(boss).with_max_handoffs(2).build()
    )
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "max_handoffs"
    assert len(client_of(worker).requests) == 2


async def test_tool_call_and_handoff_in_one_message_leave_no_orphan(backend: Backend) -> None:
    """A supervisor message with a tool call and a delegation stores a result for both."""

    @tool
    def note(text: str) -> str:
        """Take a note."""
        return f"noted {text}"

    boss = scripted(
        "boss",
        [calls(call("note", "n1", text="x"), delegate("math", "2+2", "d1")), "Done."],
        tools=[note],
    )
    math = scripted("math", ["4"])
    workflow = (
        HandoffBuilder("sup", [boss, math], history=backend.history)
        .with_supervisor(boss)
        .with_checkpointing(backend.store)
        .build()
    )
    await collect(workflow.run("go"))
    stored = await backend.history.list_messages(workflow.session_id)
    assert {m.tool_call_id: m.text for m in stored if m.role == "tool"} == {
        "n1": "noted x",
        "d1": "Handed off to math.",
    }
    assert_no_orphans([m for m in stored if m.role != "system"])


def test_with_supervisor_rejects_a_second_supervisor_for_a_worker() -> None:
    """A worker has one supervisor; a hierarchy nests teams instead."""
    a, b, w = scripted("a", []), scripted("b", []), scripted("w", [])
    builder = HandoffBuilder("sup", [a, b, w]).with_supervisor(a, [w])
    with pytest.raises(InvalidArgument, match="already a worker of supervisor 'a'"):
        builder.with_supervisor(b, [w])


def test_with_supervisor_adds_routes_beside_explicit_ones() -> None:
    """Explicit routes (a worker's END route) stay next to the supervisor's delegations."""
    boss, w = scripted("boss", []), scripted("w", [])
    workflow = HandoffBuilder("sup", [w, boss]).with_supervisor(boss).add_handoff(w, END).build()
    assert workflow.start_agent == "boss"
    assert workflow.routes() == {"w": [END], "boss": ["w"]}


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))]
)
async def test_supervisor_resumes_in_a_new_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A fanned-out supervisor run paused at a worker's tool approval finishes in another
    process: the queued worker runs, and the supervisor ends the run with its answer."""
    async with open_backend(kind, request, tmp_path) as opened:
        session_id = f"sup-{uuid.uuid4().hex}"
        first = run_phase("supervisor", "start", opened.url, session_id, opened.prefix)
        assert first["events"] == ["AgentMessage", "Handoff", "AgentMessage", "ToolApprovalRequest"]
        second = run_phase("supervisor", "finish", opened.url, session_id, opened.prefix)
    assert second["request_agent"] == "researcher"
    assert second["events"][-1] == "WorkflowOutput"
    assert second["answer"] == "Report: Found source on tea. / Intro drafted."
    stored = second["stored"][session_id]
    assert [text for role, name, text in stored if role == "user"] == ["Write a report on tea."]
    assert stored[-1] == ["assistant", "boss", "Report: Found source on tea. / Intro drafted."]
