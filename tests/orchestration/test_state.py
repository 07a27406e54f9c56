"""A workflow's typed shared state: validated updates, injected tools, commands, checkpoints."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from memweave.errors import InvalidArgument
from memweave.messages import ToolCall
from memweave.orchestration import (
    END,
    Agent,
    Command,
    Handoff,
    HandoffBuilder,
    InjectedState,
    WorkflowOutput,
    run_tool_call,
    tool,
)
from memweave.orchestration._state import StateSpec, StateUpdateInvalid
from memweave.orchestration.tools import TOOL_ERROR_KEY
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import FailingCheckpointStore, assert_no_orphans
from tests.orchestration._patterns import (
    Backend,
    Order,
    call,
    calls,
    collect,
    open_backend,
    run_phase,
)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A history and checkpoint store on a SQLite file or on Redis."""
    async with open_backend(request.param, request, tmp_path) as opened:
        yield opened


class Budget(BaseModel):
    """A small state with a constraint."""

    spent: int = Field(default=0, ge=0)
    """Money spent, never negative."""
    notes: list[str] = []
    """Anything written down."""


@tool
def spend(amount: int, budget: Annotated[Budget, InjectedState]) -> str:
    """Spend money."""
    budget.spent += amount
    return f"spent {budget.spent}"


@tool
def route_to(target: str) -> Command:
    """Send the conversation on."""
    return Command(goto=target, update={"notes": [f"to {target}"]})


def scripted(name: str, replies: Any, **options: Any) -> Agent:
    return Agent(name, ScriptedChatClient(replies), **options)


def client_of(agent: Agent) -> ScriptedChatClient:
    client = agent.client
    assert isinstance(client, ScriptedChatClient)
    return client


def test_tool_leaves_the_injected_state_out_of_its_schema() -> None:
    """A parameter annotated `InjectedState` is not in the JSON schema the model sees."""
    assert set(spend.parameters["properties"]) == {"amount"}
    assert spend.injected == ("budget",)


async def test_run_tool_call_outside_a_workflow_reports_no_state() -> None:
    """A tool taking the state, called outside a workflow with one, gets an error result."""
    result = await run_tool_call(
        ToolCall(id="c1", name="spend", arguments='{"amount": 3}'), {"spend": spend}
    )
    assert result.metadata[TOOL_ERROR_KEY] == "no_state"


async def test_handoff_update_is_validated_and_merged_into_the_state(backend: Backend) -> None:
    """A handoff's `update` payload is offered with the state's schema and merged when the
    handoff is carried out; the target sees it in its note."""
    a = scripted("a", [calls(call("handoff_to_b", "h1", task="t", update={"spent": 5}))])
    b = scripted("b", ["ok"])
    workflow = (
        HandoffBuilder("w", [a, b], history=backend.history)
        .with_state(Budget)
        .with_checkpointing(backend.store)
        .build()
    )
    await collect(workflow.run("go"))
    schema = client_of(a).requests[0].tools
    assert schema is not None
    update = schema[0]["function"]["parameters"]["properties"]["update"]
    assert set(update["properties"]) == {"spent", "notes"}
    assert "required" not in update
    assert await workflow.get_state() == Budget(spent=5)
    assert 'State update: {"spent": 5}' in client_of(b).requests[0].messages[-1].text


async def test_invalid_handoff_update_is_a_tool_error_and_the_run_goes_on() -> None:
    """An update breaking the schema is not handed off; the model reads why and goes on."""
    a = scripted(
        "a",
        [
            calls(call("handoff_to_b", "h1", update={"spent": -1})),
            calls(call("handoff_to_b", "h2", update={"nope": 1})),
            "I will stay.",
        ],
    )
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).with_state(Budget).build()
    events = await collect(workflow.run("go"))
    assert not any(isinstance(e, Handoff) for e in events)
    stored = await workflow.history.list_messages(workflow.session_id)
    results = {m.tool_call_id: m for m in stored if m.role == "tool"}
    assert results["h1"].metadata[TOOL_ERROR_KEY] == "invalid_arguments"
    assert "spent: Input should be greater than or equal to 0" in results["h1"].text
    assert "nope: unknown field of Budget" in results["h2"].text
    assert "nope" in client_of(a).requests[2].messages[-1].text
    assert await workflow.get_state() == Budget()


async def test_injected_state_changes_are_kept_in_call_order(backend: Backend) -> None:
    """Calls taking the state run one after another, each seeing the earlier changes."""
    a = scripted(
        "a",
        [calls(call("spend", "s1", amount=2), call("spend", "s2", amount=3)), "Done."],
        tools=[spend],
    )
    workflow = (
        HandoffBuilder("w", [scripted("b", []), a], history=backend.history)
        .with_start_agent(a)
        .add_handoff(a, "b")
        .with_state(Budget)
        .with_checkpointing(backend.store)
        .build()
    )
    await collect(workflow.run("spend"))
    stored = await backend.history.list_messages(workflow.session_id)
    assert [m.text for m in stored if m.role == "tool"] == ["spent 2", "spent 5"]
    assert await workflow.get_state() == Budget(spent=5)
    latest = await backend.store.get_checkpoint("w", workflow.session_id)
    assert latest is not None
    assert latest.state == {"spent": 5, "notes": []}


async def test_tool_change_breaking_the_schema_is_a_tool_error() -> None:
    """A tool leaving the state invalid gets an error result, and the state is unchanged."""
    a = scripted("a", [calls(call("spend", "s1", amount=-4)), "Hmm."], tools=[spend])
    workflow = (
        HandoffBuilder("w", [a, scripted("b", [])]).with_state(Budget).add_handoff(a, "b").build()
    )
    await collect(workflow.run("go"))
    stored = await workflow.history.list_messages(workflow.session_id)
    result = next(m for m in stored if m.role == "tool")
    assert result.metadata[TOOL_ERROR_KEY] == "invalid_state"
    assert "state update was not kept" in result.text
    assert await workflow.get_state() == Budget()


async def test_command_goto_routes_the_conversation_and_updates_state() -> None:
    """A tool returning `Command(goto=..., update=...)` hands off and updates the state."""
    a = scripted("a", [calls(call("route_to", "r1", target="b"))], tools=[route_to])
    b = scripted("b", ["b here"])
    workflow = HandoffBuilder("w", [a, b]).add_handoff(a, b).with_state(Budget).build()
    events = await collect(workflow.run("go"))
    assert [(e.source, e.target) for e in events if isinstance(e, Handoff)] == [("a", "b")]
    assert await workflow.get_state() == Budget(notes=["to b"])


async def test_command_goto_outside_the_routes_is_not_followed() -> None:
    """A command naming a participant the agent may not route to stays with the agent."""
    a = scripted("a", [calls(call("route_to", "r1", target="c")), "Staying."], tools=[route_to])
    workflow = (
        HandoffBuilder("w", [a, scripted("b", []), scripted("c", [])])
        .add_handoff(a, "b")
        .with_state(Budget)
        .build()
    )
    events = await collect(workflow.run("go"))
    assert not any(isinstance(e, Handoff) for e in events)
    stored = await workflow.history.list_messages(workflow.session_id)
    result = next(m for m in stored if m.role == "tool")
    assert "Its route to c was not followed: a may route to b." in result.text


async def test_command_to_end_ends_the_run_with_the_tool_result() -> None:
    """`Command(goto=END)` from a tool of an agent with an END route ends the run."""

    @tool
    def close() -> Command:
        """Close the case."""
        return Command(goto=END, result="Case closed.")

    a = scripted("a", [calls(call("close", "c1"))], tools=[close])
    workflow = HandoffBuilder("w", [a, scripted("b", [])]).add_handoff(a, END).build()
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert (output.reason, output.answer) == ("ended", "Case closed.")
    assert_no_orphans(output.conversation)


async def test_dict_state_takes_any_json_update() -> None:
    """A JSON-dict state starts from the dict and merges any JSON object update."""
    a = scripted("a", [calls(call("handoff_to_b", "h1", update={"topic": "tea", "n": 2}))])
    workflow = HandoffBuilder("w", [a, scripted("b", ["ok"])]).with_state({"topic": None}).build()
    events = await collect(workflow.run("go"))
    assert any(isinstance(e, Handoff) for e in events)
    assert await workflow.get_state() == {"topic": "tea", "n": 2}


async def test_state_is_restored_when_a_step_is_completed_from_storage() -> None:
    """A step stored but not checkpointed is completed with the same state update."""
    store = FailingCheckpointStore()
    a = scripted("a", [calls(call("spend", "s1", amount=7)), "Done."], tools=[spend])
    workflow = (
        HandoffBuilder("w", [a, scripted("b", [])])
        .with_state(Budget)
        .with_checkpointing(store)
        .build()
    )
    store.fail_when = lambda checkpoint: checkpoint.tool_rounds == 1
    with pytest.raises(Exception, match="injected failure"):
        await collect(workflow.run("go"))
    await collect(workflow.run())
    assert await workflow.get_state() == Budget(spent=7)
    assert len(client_of(a).requests) == 2


def test_with_state_refuses_a_model_without_defaults() -> None:
    """A model whose fields lack defaults needs an initial state."""

    class Needs(BaseModel):
        """A state without defaults."""

        name: str
        """A name."""

    builder = HandoffBuilder("w", [scripted("a", []), scripted("b", [])])
    with pytest.raises(InvalidArgument, match="pass initial="):
        builder.with_state(Needs)
    assert builder.with_state(Needs, initial={"name": "x"}) is builder


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    start=st.dictionaries(st.text(max_size=4), _JSON, max_size=4),
    updates=st.lists(st.dictionaries(st.text(max_size=4), _JSON, max_size=3), max_size=4),
)
def test_state_spec_applies_dict_updates_as_a_shallow_merge(
    start: dict[str, Any], updates: list[dict[str, Any]]
) -> None:
    """Applying JSON updates to a dict state equals merging them in order."""
    spec = StateSpec(start)
    state = spec.initial()
    expected = dict(start)
    for update in updates:
        state = spec.apply(state, update)
        expected.update(update)
    assert state == expected


@given(spent=st.integers(min_value=-50, max_value=50))
def test_state_spec_applies_a_model_update_only_when_valid(spent: int) -> None:
    """A model state keeps an update exactly when the model accepts it."""
    spec = StateSpec(Budget)
    if spent >= 0:
        assert spec.apply(spec.initial(), {"spent": spent}) == {"spent": spent, "notes": []}
    else:
        with pytest.raises(StateUpdateInvalid):
            spec.apply(spec.initial(), {"spent": spent})


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))]
)
async def test_state_resumes_in_a_new_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The state built by tools and a handoff payload is restored from the checkpoint in a
    new process, injected into the approved tool, and its command ends the run."""
    async with open_backend(kind, request, tmp_path) as opened:
        session_id = f"state-{uuid.uuid4().hex}"
        first = run_phase("state", "start", opened.url, session_id, opened.prefix)
        assert first["events"][-1] == "ToolApprovalRequest"
        second = run_phase("state", "finish", opened.url, session_id, opened.prefix)
    assert second["state_before"] == Order(items=["tea", "cake"], stage="review").model_dump()
    assert second["state_after"]["approved"] is True
    assert second["events"][-1] == "WorkflowOutput"
    assert second["answer"] == "approved 2 items"
