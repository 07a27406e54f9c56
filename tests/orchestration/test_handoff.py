"""Handoff workflows: routes, views of one stored conversation, requests, limits, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest

from memweave.errors import BackendUnavailable, InvalidArgument, ModelError
from memweave.messages import ChatMessage
from memweave.orchestration import (
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    InMemoryCheckpointStore,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
    tool,
)
from memweave.orchestration._views import HANDOFF_KEY
from memweave.orchestration.handoff import DEFAULT_AUTONOMOUS_PROMPT
from memweave.orchestration.tools import TOOL_ERROR_KEY
from memweave.session import Session
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import (
    BatchRecordingHistory,
    FailingCheckpointStore,
    OpenAIServer,
    RecordingProvider,
    assert_no_orphans,
    call,
    calls,
    wire_call,
)


async def collect(events: AsyncIterator[WorkflowEvent]) -> list[WorkflowEvent]:
    return [event async for event in events]


def kinds(events: Sequence[WorkflowEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


def handoff(target: str, call_id: str | None = None, **arguments: Any) -> Any:
    return call(f"handoff_to_{target}", call_id, **arguments)


def agents(**scripts: Any) -> list[Agent]:
    """Agents named by keyword, each answering from its own script."""
    return [Agent(name, ScriptedChatClient(script)) for name, script in scripts.items()]


def client_of(agent: Agent) -> ScriptedChatClient:
    client = agent.client
    assert isinstance(client, ScriptedChatClient)
    return client


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return f"order {order_id}: shipped"


async def test_handoff_tools_are_offered_only_along_allowed_routes() -> None:
    """Each agent is offered `handoff_to_<name>` only for the routes added for it."""
    triage, refunds, orders = agents(triage=["Hi."], refunds=[], orders=[])
    workflow = (
        HandoffBuilder("support", [triage, refunds, orders])
        .add_handoff(triage, [refunds, orders])
        .add_handoff(refunds, triage, description="Back to triage.")
        .build()
    )
    assert workflow.routes() == {
        "triage": ["refunds", "orders"],
        "refunds": ["triage"],
        "orders": [],
    }
    await collect(workflow.run("hello"))
    assert client_of(triage).requests[0].tool_names == ["handoff_to_refunds", "handoff_to_orders"]
    schema = client_of(triage).requests[0].tools
    assert schema is not None
    parameters = schema[0]["function"]["parameters"]
    assert set(parameters["properties"]) == {"reason", "task"}
    assert parameters.get("required", []) == []


async def test_default_routes_are_everyone_to_everyone() -> None:
    """Without `add_handoff` every agent may hand off to every other."""
    a, b, c = agents(a=[], b=[], c=[])
    workflow = HandoffBuilder("w", [a, b, c]).build()
    assert workflow.routes() == {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}


async def test_target_takes_over_and_sees_reason_and_task_but_not_the_call() -> None:
    """The target gets the user and agent text plus a note with reason and task; the
    source's tool calls stay out of its view."""
    triage, refunds = agents(
        triage=[
            calls(
                handoff("refunds", "h1", reason="wants money back", task="refund order 7"),
                text="One moment.",
            )
        ],
        refunds=["I can refund order 7."],
    )
    workflow = HandoffBuilder("support", [triage, refunds]).build()
    events = await collect(workflow.run("Refund order 7 please"))
    assert kinds(events) == ["AgentMessage", "Handoff", "AgentMessage", "UserInputRequest"]
    assert events[1] == Handoff(
        source="triage", target="refunds", reason="wants money back", task="refund order 7"
    )
    sent = client_of(refunds).requests[0].messages
    assert [(m.role, m.name) for m in sent] == [
        ("user", None),
        ("assistant", "triage"),
        ("system", None),
    ]
    assert sent[1].tool_calls == ()
    assert "Reason: wants money back" in sent[2].text
    assert "Task: refund order 7" in sent[2].text
    request = events[-1]
    assert isinstance(request, UserInputRequest)
    assert request.agent == "refunds"
    assert [m.text for m in request.messages if m.role == "assistant"] == [
        "One moment.",
        "I can refund order 7.",
    ]


async def test_other_tools_in_a_handoff_turn_run_and_one_handoff_is_honoured() -> None:
    """A normal tool called next to handoffs runs; only the first handoff is carried out, and
    every call gets a result."""
    triage = Agent(
        "triage",
        ScriptedChatClient(
            [
                calls(
                    call("lookup_order", "t1", order_id="9"),
                    handoff("orders", "h1"),
                    handoff("refunds", "h2"),
                )
            ]
        ),
        tools=[lookup_order],
    )
    orders, refunds = agents(orders=["Order 9 shipped."], refunds=[])
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("support", [triage, orders, refunds], history=history).build()
    events = await collect(workflow.run("Where is order 9?"))
    assert [e.target for e in events if isinstance(e, Handoff)] == ["orders"]
    stored = await history.list_messages(workflow.session_id)
    results = {m.tool_call_id: m for m in stored if m.role == "tool"}
    assert results["t1"].text == "order 9: shipped"
    assert results["h1"].text == "Handed off to orders."
    assert results["h2"].text.startswith("Not handed off to refunds")
    assert results["h2"].metadata[TOOL_ERROR_KEY] == "not_run"
    assert_no_orphans([m for m in stored if m.role != "system"])
    assert client_of(refunds).requests == []


async def test_invalid_handoff_arguments_are_reported_and_not_honoured() -> None:
    """A handoff call with bad arguments gets an error result; control stays."""
    triage = Agent(
        "triage",
        ScriptedChatClient(
            [calls(call("handoff_to_orders", "h1", reason=5)), "Let me help myself."]
        ),
    )
    (orders,) = agents(orders=[])
    workflow = HandoffBuilder("support", [triage, orders]).build()
    events = await collect(workflow.run("hi"))
    assert kinds(events) == ["AgentMessage", "AgentMessage", "UserInputRequest"]
    result = client_of(triage).requests[1].messages[-1]
    assert result.metadata[TOOL_ERROR_KEY] == "invalid_arguments"


async def test_one_conversation_is_stored_once_over_many_turns() -> None:
    """Many turns on one session store each message once, with no duplicate tool calls."""
    history = BatchRecordingHistory()
    a = Agent(
        "a",
        ScriptedChatClient(
            lambda m, t, o: calls(handoff("b", reason="yours")) if m[-1].text == "go" else "a here"
        ),
        tools=[lookup_order],
    )
    b = Agent(
        "b",
        ScriptedChatClient(
            lambda m, t, o: (
                calls(call("lookup_order", order_id="1")) if m[-1].role != "tool" else "b done"
            )
        ),
    )
    workflow = HandoffBuilder("w", [a, b], history=history).build()
    events = await collect(workflow.run("go"))
    for turn in range(4):
        request = events[-1]
        assert isinstance(request, UserInputRequest)
        events = await collect(workflow.run(responses={request.request_id: f"turn {turn}"}))
    stored = await history.list_messages(workflow.session_id)
    assert len({m.id for m in stored}) == len(stored)
    ids = [c.id for m in stored for c in m.tool_calls]
    assert len(ids) == len(set(ids))
    assert sum(len(batch) for _, batch in history.batches) == len(stored)
    assert_no_orphans([m for m in stored if m.role != "system"])
    last_request = client_of(b).requests[-1].messages
    assert len(last_request) <= len(stored) + 1


async def test_an_agent_finds_its_own_earlier_turns_when_control_returns() -> None:
    """When control comes back, the agent sees its own earlier tool calls and results."""
    a = Agent(
        "a",
        ScriptedChatClient(
            [calls(call("lookup_order", "t1", order_id="5")), calls(handoff("b", "h1")), "a again"]
        ),
        tools=[lookup_order],
    )
    b = Agent("b", ScriptedChatClient(["b answers", calls(handoff("a", "h2"))]))
    workflow = HandoffBuilder("w", [a, b]).build()
    events = await collect(workflow.run("hello"))
    request = events[-1]
    assert isinstance(request, UserInputRequest)
    assert request.agent == "b"
    events = await collect(workflow.run(responses={request.request_id: "back to a please"}))
    sent = client_of(a).requests[-1].messages
    tool_ids = [m.tool_call_id for m in sent if m.role == "tool"]
    assert tool_ids == ["t1", "h1"]
    assert [m.text for m in sent if m.role == "user"] == ["hello", "back to a please"]
    assert not any(c.id == "h2" for m in sent for c in m.tool_calls)
    assert [m.text for m in sent if m.role == "assistant" and m.name == "b"] == ["b answers"]


async def test_user_input_continues_and_terminate_ends_the_run() -> None:
    """A reply continues with the agent in control; `terminate()` ends with `WorkflowOutput`."""
    (a, b) = agents(a=["Hello!", "Goodbye!"], b=[])
    workflow = HandoffBuilder("w", [a, b]).build()
    first = await collect(workflow.run("hi"))
    request = first[-1]
    assert isinstance(request, UserInputRequest)
    second = await collect(workflow.run(responses={request.request_id: "bye"}))
    assert kinds(second) == ["AgentMessage", "UserInputRequest"]
    last = second[-1]
    assert isinstance(last, UserInputRequest)
    done = await collect(workflow.run(responses={last.request_id: last.terminate()}))
    assert kinds(done) == ["WorkflowOutput"]
    output = done[0]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "user_terminated"
    assert [m.text for m in output.conversation] == ["hi", "Hello!", "bye", "Goodbye!"]
    assert await workflow.pending_requests() == []


async def test_autonomous_mode_continues_until_the_turn_limit() -> None:
    """An autonomous agent gets the continue prompt instead of asking, up to its limit."""
    worker_client = ScriptedChatClient(
        lambda m, t, o: f"step {sum(x.role == 'assistant' for x in m)}"
    )
    worker = Agent("worker", worker_client)
    (other,) = agents(other=[])
    workflow = HandoffBuilder("w", [worker, other]).with_autonomous_mode(turn_limits=2).build()
    events = await collect(workflow.run("start"))
    assert kinds(events) == ["AgentMessage"] * 3 + ["UserInputRequest"]
    assert [m.text for m in worker_client.requests[2].messages if m.role == "user"] == [
        "start",
        DEFAULT_AUTONOMOUS_PROMPT,
        DEFAULT_AUTONOMOUS_PROMPT,
    ]


async def test_autonomous_prompts_and_limits_per_agent() -> None:
    """Prompts and limits can be set per agent; other agents keep asking the user."""
    a_client = ScriptedChatClient(lambda m, t, o: "a")
    a = Agent("a", a_client)
    (b,) = agents(b=[])
    workflow = (
        HandoffBuilder("w", [a, b])
        .with_autonomous_mode(agents=[a], prompts={"a": "Keep going."}, turn_limits={"a": 1})
        .build()
    )
    events = await collect(workflow.run("start"))
    assert kinds(events) == ["AgentMessage", "AgentMessage", "UserInputRequest"]
    assert a_client.requests[1].messages[-1].text == "Keep going."
    with pytest.raises(InvalidArgument, match="turn_limits"):
        HandoffBuilder("w", [a, b]).with_autonomous_mode(agents=[a], turn_limits={"b": 3})


async def test_tool_approval_pauses_and_approval_runs_the_tool() -> None:
    """An `approval="always"` call pauses the run; approving runs it and the loop goes on."""
    ran: list[str] = []

    @tool(approval="always")
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return f"refunded {order_id}"

    refunds = Agent(
        "refunds",
        ScriptedChatClient(
            [
                calls(call("refund", "r1", order_id="7"), call("lookup_order", "l1", order_id="7")),
                "Done.",
            ]
        ),
        tools=[refund, lookup_order],
    )
    (triage,) = agents(triage=[])
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [refunds, triage], history=history).build()
    events = await collect(workflow.run("refund 7"))
    assert kinds(events) == ["AgentMessage", "ToolApprovalRequest"]
    request = events[-1]
    assert isinstance(request, ToolApprovalRequest)
    assert (request.agent, request.tool_call.name, request.tool_call.id) == (
        "refunds",
        "refund",
        "r1",
    )
    assert ran == []
    stored = await history.list_messages(workflow.session_id)
    assert [m.tool_call_id for m in stored if m.role == "tool"] == ["l1"]
    with pytest.raises(InvalidArgument, match="waits for responses"):
        await collect(workflow.run("hello?"))
    events = await collect(workflow.run(responses={request.request_id: request.approve()}))
    assert ran == ["7"]
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    stored = await history.list_messages(workflow.session_id)
    assert_no_orphans(stored)


async def test_a_denial_reaches_the_model_as_the_tool_result() -> None:
    """Denying a call gives the model a result saying so, with the reason."""

    @tool(approval="always")
    def delete_account() -> str:
        raise AssertionError("must not run")

    client = ScriptedChatClient([calls(call("delete_account", "d1")), "Understood."])
    agent = Agent("admin", client, tools=[delete_account])
    (other,) = agents(other=[])
    workflow = HandoffBuilder("w", [agent, other]).build()
    request = (await collect(workflow.run("delete me")))[-1]
    assert isinstance(request, ToolApprovalRequest)
    await collect(workflow.run(responses={request.request_id: request.deny("not verified")}))
    result = client.requests[1].messages[-1]
    assert result.tool_call_id == "d1"
    assert result.metadata[TOOL_ERROR_KEY] == "denied"
    assert result.text.endswith("Reason: not verified")


async def test_approvals_may_be_answered_a_few_at_a_time() -> None:
    """With two pending approvals, answering one yields the other again."""

    @tool(approval="always")
    def act(n: int) -> str:
        return f"did {n}"

    client = ScriptedChatClient([calls(call("act", "1", n=1), call("act", "2", n=2)), "ok"])
    workflow = HandoffBuilder("w", [Agent("a", client, tools=[act]), *agents(b=[])]).build()
    events = await collect(workflow.run("go"))
    first, second = events[-2:]
    assert isinstance(first, ToolApprovalRequest)
    assert isinstance(second, ToolApprovalRequest)
    events = await collect(workflow.run(responses={first.request_id: True}))
    assert events == [second]
    events = await collect(workflow.run(responses={second.request_id: False}))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    results = client.requests[1].messages[-2:]
    assert results[0].text == "did 1"
    assert results[1].metadata[TOOL_ERROR_KEY] == "denied"


async def test_a_handoff_waits_for_approvals_in_the_same_turn() -> None:
    """A handoff next to a call needing approval happens once the call is answered."""

    @tool(approval="always")
    def refund() -> str:
        return "refunded"

    a = Agent(
        "a",
        ScriptedChatClient([calls(call("refund", "r1"), handoff("b", "h1", task="confirm"))]),
        tools=[refund],
    )
    (b,) = agents(b=["Confirmed."])
    workflow = HandoffBuilder("w", [a, b]).build()
    request = (await collect(workflow.run("go")))[-1]
    assert isinstance(request, ToolApprovalRequest)
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert kinds(events) == ["Handoff", "AgentMessage", "UserInputRequest"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_termination_condition_is_checked_after_every_step(is_async: bool) -> None:
    """The condition sees the whole conversation; True ends the run with `WorkflowOutput`."""
    seen: list[int] = []

    def condition(conversation: list[ChatMessage]) -> bool:
        seen.append(len(conversation))
        return any("resolved" in m.text for m in conversation if m.role == "assistant")

    async def async_condition(conversation: list[ChatMessage]) -> bool:
        return condition(conversation)

    a = Agent(
        "a",
        ScriptedChatClient([calls(call("lookup_order", order_id="1")), "Issue resolved."]),
        tools=[lookup_order],
    )
    (b,) = agents(b=[])
    workflow = HandoffBuilder(
        "w", [a, b], termination_condition=async_condition if is_async else condition
    ).build()
    events = await collect(workflow.run("help"))
    assert kinds(events) == ["AgentMessage", "AgentMessage", "WorkflowOutput"]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "termination_condition"
    assert seen == [1, 3, 4]
    assert await workflow.pending_requests() == []


async def test_max_handoffs_stops_the_run() -> None:
    """A handoff beyond the limit is refused and the run ends with a clear final event."""
    a, b, c = agents(a=[calls(handoff("b", "h1"))], b=[calls(handoff("c", "h2"))], c=[])
    workflow = HandoffBuilder("w", [a, b, c]).with_max_handoffs(1).build()
    events = await collect(workflow.run("go"))
    assert kinds(events) == ["AgentMessage", "Handoff", "AgentMessage", "WorkflowOutput"]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "max_handoffs"
    assert "limit of 1 handoffs" in output.detail
    result = output.conversation[-1]
    assert result.tool_call_id == "h2"
    assert result.metadata[TOOL_ERROR_KEY] == "refused"
    assert client_of(c).requests == []


async def test_ping_pong_guard_stops_a_hand_back_without_text() -> None:
    """B handing straight back to A, which just handed to B, without writing anything stops
    the run."""
    a, b = agents(a=[calls(handoff("b", "h1"))], b=[calls(handoff("a", "h2"), call("other", "x1"))])
    workflow = HandoffBuilder("w", [a, b]).build()
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ping_pong"
    assert "without writing anything (a -> b -> a)" in output.detail
    assert_no_orphans([m for m in output.conversation if m.role != "system"])
    assert len(client_of(a).requests) == 1


async def test_ping_pong_guard_allows_rerouting_after_a_hand_back_with_text() -> None:
    """A tutor that says why and hands back lets triage route again (triage -> math ->
    triage -> history)."""
    triage = Agent(
        "triage",
        ScriptedChatClient([calls(handoff("math", "h1")), calls(handoff("history", "h3"))]),
    )
    math = Agent(
        "math",
        ScriptedChatClient([calls(handoff("triage", "h2"), text="That is a history question.")]),
    )
    history_tutor = Agent("history", ScriptedChatClient(["Augustus."]))
    workflow = HandoffBuilder("tutors", [triage, math, history_tutor]).build()
    events = await collect(workflow.run("Who was the first emperor of Rome?"))
    assert [(e.source, e.target) for e in events if isinstance(e, Handoff)] == [
        ("triage", "math"),
        ("math", "triage"),
        ("triage", "history"),
    ]
    assert kinds(events)[-1] == "UserInputRequest"


async def test_ping_pong_guard_stops_a_repeated_bounce() -> None:
    """A -> B -> A -> B stops the run, even when B wrote text before handing back."""
    a, b = agents(
        a=[calls(handoff("b", "h1")), calls(handoff("b", "h3"))],
        b=[calls(handoff("a", "h2"), text="Not mine.")],
    )
    workflow = HandoffBuilder("w", [a, b]).build()
    events = await collect(workflow.run("go"))
    assert [(e.source, e.target) for e in events if isinstance(e, Handoff)] == [
        ("a", "b"),
        ("b", "a"),
    ]
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ping_pong"
    assert "(a -> b -> a -> b)" in output.detail
    assert output.conversation[-1].metadata[TOOL_ERROR_KEY] == "refused"
    assert len(client_of(b).requests) == 1


async def test_ping_pong_guard_allows_a_return_after_user_input() -> None:
    """Handing back after the user spoke is not ping-pong; the guard can also be disabled."""
    a, b = agents(a=[calls(handoff("b")), "a here"], b=["b here", calls(handoff("a"))])
    workflow = HandoffBuilder("w", [a, b]).build()
    request = (await collect(workflow.run("go")))[-1]
    assert isinstance(request, UserInputRequest)
    events = await collect(workflow.run(responses={request.request_id: "back to a"}))
    assert kinds(events)[-3:] == ["Handoff", "AgentMessage", "UserInputRequest"]

    a, b = agents(a=[calls(handoff("b")), "a here"], b=[calls(handoff("a"))])
    workflow = HandoffBuilder("w", [a, b]).with_ping_pong_guard(False).build()
    events = await collect(workflow.run("go"))
    assert kinds(events)[-1] == "UserInputRequest"


async def test_checkpoints_chain_and_are_small_json() -> None:
    """Every step saves a checkpoint linked to its parent, as plain versioned JSON."""
    store = InMemoryCheckpointStore()
    a, b = agents(a=[calls(handoff("b", reason="r"))], b=["hi"])
    workflow = HandoffBuilder("w", [a, b]).with_checkpointing(store).build()
    await collect(workflow.run("go"))
    checkpoints = await store.list_checkpoints("w", workflow.session_id)
    assert [c.parent_id for c in checkpoints[:-1]] == [c.id for c in checkpoints[1:]]
    assert checkpoints[-1].parent_id is None
    latest = checkpoints[0]
    assert (latest.status, latest.current_agent, latest.handoffs) == ("waiting", "b", 1)
    document = json.loads(latest.to_json())
    assert document["v"] == 1
    assert document["session_id"] == workflow.session_id
    assert len(latest.to_json()) < 2000


async def test_resume_after_a_failed_model_call_reruns_the_failed_step() -> None:
    """The error reaches the caller; `run()` then re-runs the step that failed."""
    attempts: list[int] = []

    def flaky(messages: Any, tools: Any, options: Any) -> str:
        attempts.append(len(messages))
        if len(attempts) == 1:
            raise ModelError("timeout")
        return "Recovered."

    a, b = agents(a=[calls(handoff("b", "h1"))], b=[])
    b = Agent("b", ScriptedChatClient(flaky))
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [a, b], history=history).build()
    with pytest.raises(ModelError, match="timeout"):
        await collect(workflow.run("go"))
    stored_before = await history.list_messages(workflow.session_id)
    events = await collect(workflow.run())
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert attempts[0] == attempts[1]
    stored = await history.list_messages(workflow.session_id)
    assert stored[: len(stored_before)] == stored_before
    assert [m.text for m in stored[len(stored_before) :]] == ["Recovered."]


async def test_context_providers_get_every_step_and_its_errors() -> None:
    """An agent's providers are asked before each model call and told the outcome."""
    provider = RecordingProvider(instructions="Be nice.")

    def fail(messages: Any, tools: Any, options: Any) -> str:
        raise ModelError("down")

    a = Agent("a", ScriptedChatClient(["ok"]), context_providers=[provider])
    b = Agent("b", ScriptedChatClient(fail), context_providers=[RecordingProvider()])
    workflow = HandoffBuilder("w", [a, b]).build()
    await collect(workflow.run("go"))
    assert client_of(a).requests[0].messages[0].text == "Be nice."
    ((request, response, error),) = provider.invoked_calls
    assert ([m.text for m in request], [m.text for m in response], error) == (["go"], ["ok"], None)


async def test_requests_and_responses_are_validated() -> None:
    """Unknown request ids, wrong answer kinds and nothing to resume are clear errors."""
    a, b = agents(a=["hi"], b=[])
    workflow = HandoffBuilder("w", [a, b]).build()
    with pytest.raises(InvalidArgument, match="nothing to resume"):
        await collect(workflow.run())
    with pytest.raises(InvalidArgument, match="no pending requests"):
        await collect(workflow.run(responses={"x": "y"}))
    request = (await collect(workflow.run("go")))[-1]
    assert isinstance(request, UserInputRequest)
    with pytest.raises(InvalidArgument, match="not a pending request id"):
        await collect(workflow.run(responses={"nope": "y"}))
    with pytest.raises(InvalidArgument, match="user input request takes text"):
        await collect(workflow.run(responses={request.request_id: True}))
    with pytest.raises(InvalidArgument, match="not both"):
        await collect(workflow.run("x", responses={request.request_id: "y"}))
    assert await workflow.pending_requests() == [request]


async def test_sessions_are_independent() -> None:
    """One workflow runs many sessions; each has its own conversation and checkpoints."""
    a = Agent("a", ScriptedChatClient(lambda m, t, o: f"{len(m)}"))
    (b,) = agents(b=[])
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [a, b], history=history).build()
    await collect(workflow.run("one", session="s1"))
    await collect(workflow.run("two", session="s2"))
    assert [m.text for m in await history.list_messages("s1")] == ["one", "1"]
    assert [m.text for m in await history.list_messages("s2")] == ["two", "1"]
    assert len(await workflow.pending_requests(session="s1")) == 1


async def test_resuming_an_older_checkpoint_is_refused_once_the_conversation_moved_on() -> None:
    """`checkpoint_id` naming a checkpoint that messages were stored after raises
    `InvalidArgument`; nothing is asked or stored."""
    store = InMemoryCheckpointStore()
    history = BatchRecordingHistory()
    a, b = agents(a=["first", "again"], b=[])
    workflow = HandoffBuilder("w", [a, b], history=history).with_checkpointing(store).build()
    await collect(workflow.run("go"))
    checkpoints = await store.list_checkpoints("w", workflow.session_id)
    running = next(c for c in checkpoints if c.status == "running")
    stored = await history.list_messages(workflow.session_id)
    with pytest.raises(InvalidArgument, match="1 message was stored after it"):
        await collect(workflow.run(checkpoint_id=running.id))
    assert len(client_of(a).requests) == 1
    assert await history.list_messages(workflow.session_id) == stored
    assert len(await store.list_checkpoints("w", workflow.session_id)) == len(checkpoints)
    with pytest.raises(InvalidArgument, match="no such checkpoint"):
        await collect(workflow.run(checkpoint_id="missing"))


async def test_resume_from_a_given_checkpoint_with_nothing_stored_since() -> None:
    """An older checkpoint that no message was stored after resumes: here the one before a
    partial approval answer, so both approvals are asked again."""

    @tool(approval="always")
    def act(n: int) -> str:
        return f"did {n}"

    store = InMemoryCheckpointStore()
    client = ScriptedChatClient([calls(call("act", "1", n=1), call("act", "2", n=2)), "ok"])
    workflow = (
        HandoffBuilder("w", [Agent("a", client, tools=[act]), *agents(b=[])])
        .with_checkpointing(store)
        .build()
    )
    first, second = (await collect(workflow.run("go")))[-2:]
    assert isinstance(first, ToolApprovalRequest)
    await collect(workflow.run(responses={first.request_id: True}))
    _, before = await store.list_checkpoints("w", workflow.session_id, limit=2)
    assert await collect(workflow.run(checkpoint_id=before.id)) == [first, second]


def refund_agent(ran: list[str], **options: Any) -> Agent:
    """An agent that asks to refund order 7 (a tool needing approval), then says "Done."."""

    @tool(approval="always")
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return f"refunded {order_id}"

    client = ScriptedChatClient([calls(call("refund", "r1", order_id="7")), "Done."])
    return Agent("refunds", client, tools=[refund], **options)


async def test_leaving_the_events_after_a_step_keeps_its_approval_pending() -> None:
    """A consumer that stops reading at a step's `AgentMessage` finds the step's approval
    request pending; approving it runs the tool once and asks the model once more."""
    ran: list[str] = []
    agent = refund_agent(ran)
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [agent, *agents(b=[])], history=history).build()
    async for event in workflow.run("refund 7"):
        if isinstance(event, AgentMessage):
            break
    (request,) = await workflow.pending_requests()
    assert isinstance(request, ToolApprovalRequest)
    assert request.tool_call.id == "r1"
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert ran == ["7"]
    assert len(client_of(agent).requests) == 2
    assert_no_orphans(await history.list_messages(workflow.session_id))


async def test_a_cancelled_run_keeps_the_checkpoint_of_its_stored_step() -> None:
    """A run cancelled after a step was stored (here while a provider's `invoked` runs)
    leaves the step checkpointed: its approval request is pending."""
    entered = asyncio.Event()

    class Blocking(RecordingProvider):
        async def invoked(
            self,
            session: Session,
            request_messages: Sequence[ChatMessage],
            response_messages: Sequence[ChatMessage],
            error: BaseException | None = None,
        ) -> None:
            entered.set()
            await asyncio.Event().wait()

    agent = refund_agent([], context_providers=[Blocking()])
    workflow = HandoffBuilder("w", [agent, *agents(b=[])]).build()
    task = asyncio.create_task(collect(workflow.run("refund 7")))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (request,) = await workflow.pending_requests()
    assert isinstance(request, ToolApprovalRequest)
    assert len(client_of(agent).requests) == 1


async def test_a_failing_invoked_hook_leaves_the_step_checkpointed() -> None:
    """A provider's `invoked` failing after a step reaches the caller; `run()` then goes on
    from the next step instead of asking the model again."""

    class Failing(RecordingProvider):
        async def invoked(
            self,
            session: Session,
            request_messages: Sequence[ChatMessage],
            response_messages: Sequence[ChatMessage],
            error: BaseException | None = None,
        ) -> None:
            raise RuntimeError("memory down")

    a = Agent("a", ScriptedChatClient([calls(handoff("b", "h1"))]), context_providers=[Failing()])
    (b,) = agents(b=["b here"])
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [a, b], history=history).build()
    with pytest.raises(RuntimeError, match="memory down"):
        await collect(workflow.run("go"))
    events = await collect(workflow.run())
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert cast(AgentMessage, events[0]).agent == "b"
    assert len(client_of(a).requests) == 1
    stored = await history.list_messages(workflow.session_id)
    assert [c.id for m in stored for c in m.tool_calls] == ["h1"]


async def test_a_step_stored_but_not_checkpointed_is_completed_not_rerun() -> None:
    """When the checkpoint after a stored step cannot be saved, `run()` completes the step
    from the stored reply: the model is not asked again and the approval is pending."""
    ran: list[str] = []
    agent = refund_agent(ran)
    store = FailingCheckpointStore()
    history = BatchRecordingHistory()
    workflow = (
        HandoffBuilder("w", [agent, *agents(b=[])], history=history)
        .with_checkpointing(store)
        .build()
    )
    store.fail_when = lambda checkpoint: checkpoint.status == "waiting"
    with pytest.raises(BackendUnavailable):
        await collect(workflow.run("refund 7"))
    assert store.failures == 1
    (request,) = await workflow.pending_requests()
    assert isinstance(request, ToolApprovalRequest)
    events = await collect(workflow.run())
    assert kinds(events) == ["AgentMessage", "ToolApprovalRequest"]
    assert events[-1] == request
    assert len(client_of(agent).requests) == 1
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert ran == ["7"]
    stored = await history.list_messages(workflow.session_id)
    assert [m.text for m in stored if m.role == "assistant"] == ["", "Done."]
    assert_no_orphans(stored)


async def test_a_handoff_stored_but_not_checkpointed_happens_once() -> None:
    """A handoff step stored before its checkpoint failed is completed on `run()`: one
    handoff call, one result, one note, and the target answers."""
    store = FailingCheckpointStore()
    a, b = agents(a=[calls(handoff("b", "h1", reason="billing"))], b=["b here"])
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [a, b], history=history).with_checkpointing(store).build()
    store.fail_when = lambda checkpoint: checkpoint.current_agent == "b"
    with pytest.raises(BackendUnavailable):
        await collect(workflow.run("go"))
    events = await collect(workflow.run())
    assert kinds(events) == ["AgentMessage", "Handoff", "AgentMessage", "UserInputRequest"]
    assert events[1] == Handoff(source="a", target="b", reason="billing")
    assert len(client_of(a).requests) == 1
    stored = await history.list_messages(workflow.session_id)
    assert [c.id for m in stored for c in m.tool_calls] == ["h1"]
    assert [m.text for m in stored if m.role == "tool"] == ["Handed off to b."]
    assert len([m for m in stored if HANDOFF_KEY in m.metadata]) == 1
    assert [m.text for m in stored if m.role == "assistant"] == ["", "b here"]


def support_workflow(store: FailingCheckpointStore, ran: list[str]) -> Any:
    """Triage hands off to refunds, which needs an approval, goes on once on its own, asks
    the user, and closes the case (the termination condition)."""

    @tool(approval="always")
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return f"refunded {order_id}"

    triage = Agent(
        "triage",
        ScriptedChatClient([calls(handoff("refunds", "h1", reason="refund"), text="One moment.")]),
    )
    refunds = Agent(
        "refunds",
        ScriptedChatClient(
            [
                calls(call("refund", "r1", order_id="7"), call("lookup_order", "l1", order_id="7")),
                "Refunded.",
                "Anything else?",
                "Case closed.",
            ]
        ),
        tools=[refund, lookup_order],
    )
    return (
        HandoffBuilder(
            "support",
            [triage, refunds],
            history=BatchRecordingHistory(),
            termination_condition=lambda c: c[-1].text == "Case closed.",
        )
        .with_autonomous_mode(agents=[refunds], turn_limits=1)
        .with_checkpointing(store)
        .build()
    )


async def drive_support(workflow: Any) -> list[WorkflowEvent]:
    """Run the support conversation to its end, resuming with `run()` after a failure; return
    every event yielded, including those yielded before a failure."""
    events: list[WorkflowEvent] = []
    action: Any = {"message": "Refund order 7."}
    while True:
        try:
            async for event in workflow.run(**action):
                events.append(event)
        except BackendUnavailable:
            action = {}
            continue
        last = events[-1]
        if isinstance(last, WorkflowOutput):
            return events
        assert isinstance(last, ToolApprovalRequest | UserInputRequest)
        answer = True if isinstance(last, ToolApprovalRequest) else "No, thanks."
        action = {"responses": {last.request_id: answer}}


async def test_any_failed_checkpoint_save_resumes_to_the_same_conversation() -> None:
    """Whichever checkpoint save fails, `run()` goes on to the conversation an uninterrupted
    run stores, yielding every event once, without asking a model or running a tool twice."""

    def shape(conversation: Sequence[ChatMessage]) -> list[tuple[str, str | None, str]]:
        return [(m.role, m.name, m.text) for m in conversation]

    ran: list[str] = []
    baseline_store = FailingCheckpointStore()
    baseline = await drive_support(support_workflow(baseline_store, ran))
    expected = cast(WorkflowOutput, baseline[-1])
    assert expected.reason == "termination_condition"
    saves = len(await baseline_store.list_checkpoints("support", expected.session_id))
    assert saves >= 8
    for failing in range(saves):
        ran = []
        store = FailingCheckpointStore()
        counter = iter(range(saves))
        store.fail_when = lambda checkpoint, n=failing, seen=counter: next(seen) == n  # type: ignore[misc]
        workflow = support_workflow(store, ran)
        events = await drive_support(workflow)
        assert store.failures == 1
        output = events[-1]
        assert isinstance(output, WorkflowOutput)
        assert shape(output.conversation) == shape(expected.conversation), failing
        assert_no_orphans([m for m in output.conversation if m.role != "system"])
        assert ran == ["7"]
        assert kinds(events) == kinds(baseline), failing


async def test_retrying_answers_whose_results_were_stored_runs_the_tool_once() -> None:
    """`run(responses=...)` retried after its results were stored but not checkpointed
    completes the run without running the approved tool again."""
    ran: list[str] = []
    store = FailingCheckpointStore()
    history = BatchRecordingHistory()
    workflow = (
        HandoffBuilder("w", [refund_agent(ran), *agents(b=[])], history=history)
        .with_checkpointing(store)
        .build()
    )
    request = (await collect(workflow.run("refund 7")))[-1]
    assert isinstance(request, ToolApprovalRequest)
    store.fail_when = lambda checkpoint: checkpoint.status == "running"
    with pytest.raises(BackendUnavailable):
        await collect(workflow.run(responses={request.request_id: True}))
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert ran == ["7"]
    assert_no_orphans(await history.list_messages(workflow.session_id))


async def test_retrying_a_message_whose_input_was_stored_stores_it_once() -> None:
    """`run(message)` retried after the input was stored but not checkpointed stores the
    input once and answers it."""
    store = FailingCheckpointStore()
    history = BatchRecordingHistory()
    a, b = agents(a=["hello"], b=[])
    workflow = HandoffBuilder("w", [a, b], history=history).with_checkpointing(store).build()
    store.fail_when = lambda checkpoint: checkpoint.status == "running"
    with pytest.raises(BackendUnavailable):
        await collect(workflow.run("hi"))
    events = await collect(workflow.run("hi"))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert [m.text for m in await history.list_messages(workflow.session_id)] == ["hi", "hello"]


async def test_an_approved_context_provider_tool_runs() -> None:
    """A tool offered by a context provider with `approval="always"` runs once approved."""
    ran: list[str] = []

    @tool(approval="always")
    def wipe_cache(key: str) -> str:
        ran.append(key)
        return f"wiped {key}"

    client = ScriptedChatClient([calls(call("wipe_cache", "w1", key="k")), "Wiped."])
    provider = RecordingProvider(tools=[wipe_cache])
    agent = Agent("a", client, context_providers=[provider])
    workflow = HandoffBuilder("w", [agent, *agents(b=[])]).build()
    request = (await collect(workflow.run("wipe k")))[-1]
    assert isinstance(request, ToolApprovalRequest)
    events = await collect(workflow.run(responses={request.request_id: True}))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    assert ran == ["k"]
    result = client.requests[1].messages[-1]
    assert (result.tool_call_id, result.text) == ("w1", "wiped k")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda a, b: HandoffBuilder("w", [a]), "needs two agents"),
        (lambda a, b: HandoffBuilder("w", [a, a]), "share this name"),
        (lambda a, b: HandoffBuilder("", [a, b]), "workflow name"),
        (lambda a, b: HandoffBuilder("w", [a, b]).with_supervisor(a, [a]), "its own worker"),
        (lambda a, b: HandoffBuilder("w", [a, b]).add_handoff(a, "zed"), "not a participant"),
        (lambda a, b: HandoffBuilder("w", [a, b]).with_start_agent("zed"), "not a participant"),
        (lambda a, b: HandoffBuilder("w", [a, b]).with_max_handoffs(-1), "max_handoffs"),
        (lambda a, b: HandoffBuilder("w", [a, b]).with_checkpointing(object()), "CheckpointStore"),  # type: ignore[arg-type]
    ],
)
def test_builder_rejects_bad_setups(make: Any, fragment: str) -> None:
    """Bad participants, routes and limits raise `InvalidArgument` naming the value."""
    a, b = agents(a=[], b=[])
    with pytest.raises(InvalidArgument, match=fragment):
        make(a, b)


def test_handoff_tool_names_are_reserved() -> None:
    """An agent's own tool may not be named `handoff_to_...`."""

    @tool
    def handoff_to_x() -> str:
        return ""

    a = Agent("a", ScriptedChatClient([]), tools=[handoff_to_x])
    (b,) = agents(b=[])
    with pytest.raises(InvalidArgument, match="reserved"):
        HandoffBuilder("w", [a, b])


async def test_start_agent_and_description_defaults() -> None:
    """`with_start_agent` picks who answers first; handoff tools describe their target."""
    a = Agent("a", ScriptedChatClient([]), description="General help.")
    b = Agent("b", ScriptedChatClient(["b first"]))
    workflow = HandoffBuilder("w", [a, b]).with_start_agent(b).build()
    events = await collect(workflow.run("hi"))
    assert isinstance(events[0], AgentMessage)
    assert events[0].agent == "b"
    tools = client_of(b).requests[0].tools
    assert tools is not None
    assert tools[0]["function"]["description"] == "General help."


async def test_handoff_notes_are_marked_and_shown_only_to_the_target() -> None:
    """The stored note names source and target; other agents never see it."""
    a, b, c = agents(
        a=[calls(handoff("b", reason="r", task="t"))], b=[calls(handoff("c", "h2"))], c=["c here"]
    )
    history = BatchRecordingHistory()
    workflow = HandoffBuilder("w", [a, b, c], history=history).build()
    await collect(workflow.run("go"))
    notes = [
        m for m in await history.list_messages(workflow.session_id) if HANDOFF_KEY in m.metadata
    ]
    routes = [cast(dict[str, str], n.metadata[HANDOFF_KEY]) for n in notes]
    assert [(r["source"], r["target"]) for r in routes] == [("a", "b"), ("b", "c")]
    c_sees = client_of(c).requests[0].messages
    assert [m.text.splitlines()[0] for m in c_sees if m.role == "system"] == [
        "b handed the conversation over to you (c)."
    ]


async def test_handoff_over_the_openai_wire_format() -> None:
    """Over the real SDK, handoff tools go out as function tools, and the target's request is
    plain OpenAI messages: no foreign tool calls, the note as a system message."""
    server = OpenAIServer(
        [
            wire_call("call_h", "handoff_to_b", '{"reason": "billing", "task": "check invoice"}'),
            {"role": "assistant", "content": "Invoice 12 is paid."},
        ]
    )
    client = server.client()
    workflow = HandoffBuilder("w", [Agent("a", client), Agent("b", client)]).build()
    events = await collect(workflow.run("Is invoice 12 paid?"))
    assert kinds(events) == ["AgentMessage", "Handoff", "AgentMessage", "UserInputRequest"]
    (offered,) = server.bodies[0]["tools"]
    assert offered["function"]["name"] == "handoff_to_b"
    assert offered["function"]["parameters"]["properties"]["task"]["type"] == "string"
    assert server.bodies[1]["messages"] == [
        {"role": "user", "content": "Is invoice 12 paid?"},
        {
            "role": "system",
            "content": "a handed the conversation over to you (b).\nReason: billing\n"
            "Task: check invoice",
        },
    ]
    assert [t["function"]["name"] for t in server.bodies[1]["tools"]] == ["handoff_to_a"]
