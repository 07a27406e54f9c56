"""Handoff workflows: routes, views of one stored conversation, requests, limits, resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest

from memweave.errors import InvalidArgument, ModelError
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
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import (
    BatchRecordingHistory,
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


async def test_ping_pong_guard_stops_a_to_b_to_a() -> None:
    """B handing straight back to A, which just handed to B, stops the run."""
    a, b = agents(a=[calls(handoff("b", "h1"))], b=[calls(handoff("a", "h2"), call("other", "x1"))])
    workflow = HandoffBuilder("w", [a, b]).build()
    events = await collect(workflow.run("go"))
    output = events[-1]
    assert isinstance(output, WorkflowOutput)
    assert output.reason == "ping_pong"
    assert "A -> B -> A" in output.detail
    assert_no_orphans([m for m in output.conversation if m.role != "system"])
    assert len(client_of(a).requests) == 1


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


async def test_resume_from_a_given_checkpoint() -> None:
    """`checkpoint_id` resumes from that checkpoint instead of the latest."""
    store = InMemoryCheckpointStore()
    a, b = agents(a=["first", "again"], b=[])
    workflow = HandoffBuilder("w", [a, b]).with_checkpointing(store).build()
    await collect(workflow.run("go"))
    checkpoints = await store.list_checkpoints("w", workflow.session_id)
    running = next(c for c in checkpoints if c.status == "running")
    events = await collect(workflow.run(checkpoint_id=running.id))
    assert kinds(events) == ["AgentMessage", "UserInputRequest"]
    with pytest.raises(InvalidArgument, match="no such checkpoint"):
        await collect(workflow.run(checkpoint_id="missing"))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda a, b: HandoffBuilder("w", [a]), "needs two agents"),
        (lambda a, b: HandoffBuilder("w", [a, a]), "share this name"),
        (lambda a, b: HandoffBuilder("", [a, b]), "workflow name"),
        (lambda a, b: HandoffBuilder("w", [a, b]).add_handoff(a, a), "to itself"),
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
