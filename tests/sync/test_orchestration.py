"""Blocking orchestration: `Agent.run`, `initiate_chats`, `Sequential`, handoff workflows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memweave import ChatMessage, sync
from memweave._portal import portal
from memweave.errors import InvalidArgument
from memweave.orchestration import (
    Agent,
    AgentMessage,
    Handoff,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowOutput,
    tool,
)
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import call, calls


def test_agent_run_stores_the_turn_in_a_blocking_history(
    sync_history: sync.ChatHistoryProvider, session_id: str
) -> None:
    """`Agent.run` answers and stores input and reply in the blocking history it was given."""
    agent = sync.Agent("helper", ScriptedChatClient(["Hello!", "Again!"]), history=sync_history)
    first = agent.run("Hi", session=session_id)
    second = agent.run("Hi again", session=session_id)
    assert (first.text, second.text) == ("Hello!", "Again!")
    assert [m.text for m in sync_history.list_messages(session_id)] == [
        "Hi",
        "Hello!",
        "Hi again",
        "Again!",
    ]
    assert agent.history is sync_history


def test_agent_takes_async_components_too() -> None:
    """An async history, reducer or context provider given to a blocking agent is used on
    the portal; the properties read as on the async agent."""
    from memweave.providers import InMemoryChatHistoryProvider
    from memweave.reducers import MessageCountReducer

    agent = sync.Agent(
        "helper",
        ScriptedChatClient(["ok"]),
        history=InMemoryChatHistoryProvider(),
        reducer=MessageCountReducer(4),
        instructions="Be brief.",
        options={"temperature": 0},
    )
    reply = agent.run("hi", session="s")
    assert reply.text == "ok"
    assert agent.history.count_messages("s") == 2
    assert (agent.name, agent.instructions, dict(agent.options)) == (
        "helper",
        "Be brief.",
        {"temperature": 0},
    )
    assert isinstance(agent.history, sync.ChatHistoryProvider)


def test_agent_rejects_what_the_async_agent_rejects() -> None:
    """Bad arguments raise the async agent's errors."""
    with pytest.raises(InvalidArgument, match="name"):
        sync.Agent("no spaces allowed", ScriptedChatClient([]))


def test_sync_tools_and_approvals_may_use_the_blocking_face(
    sync_history: sync.ChatHistoryProvider, session_id: str
) -> None:
    """A sync tool and a sync `approve` callback run in worker threads, off the shared
    portal loop, so they may call the blocking face themselves."""
    notes = sync.from_url("memory://")
    seen_threads: list[threading.Thread] = []

    @tool(approval="always")
    def remember(note: str) -> str:
        """Remember a note."""
        notes.add_messages("notes", [ChatMessage.user(note)])
        return f"stored {notes.count_messages('notes')}"

    def approve(tool_call: Any) -> bool:
        seen_threads.append(threading.current_thread())
        return notes.count_messages("notes") == 0

    client = ScriptedChatClient([calls(call("remember", note="buy milk")), "Noted."])
    agent = sync.Agent("helper", client, tools=[remember], history=sync_history)
    reply = agent.run("remember milk", session=session_id, approve=approve)
    assert reply.text == "Noted."
    assert [m.text for m in notes.list_messages("notes")] == ["buy milk"]
    assert seen_threads
    assert portal().thread not in seen_threads
    notes.close()


def test_initiate_chats_runs_blocking_agents(
    sync_history: sync.ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """`initiate_chats` runs chats between blocking agents, with carryover, stored in the
    blocking history; a sync summary function runs off the loop."""
    sender = sync.Agent("user", ScriptedChatClient(["Thanks. TERMINATE"]))
    numbers = sync.Agent("numbers", ScriptedChatClient(["14 doubled is 28. TERMINATE"]))
    analyst = sync.Agent("analyst", ScriptedChatClient(["28 is even. TERMINATE"]))
    first, second = new_session_id("c1"), new_session_id("c2")

    def summary(sender: Agent, recipient: Agent, transcript: list[ChatMessage]) -> str:
        return f"{recipient.name} said {len(transcript)} things"

    results = sync.initiate_chats(
        sender,
        [
            sync.ChatSpec(numbers, "Double 14.", max_turns=1, session_id=first),
            sync.ChatSpec(
                analyst, "Is it even?", max_turns=1, session_id=second, summary_method=summary
            ),
        ],
        history=sync_history,
    )
    assert results[0].summary == "14 doubled is 28."
    assert results[1].carryover == ("14 doubled is 28.",)
    assert results[1].summary == "analyst said 2 things"
    assert sync_history.count_messages(first) == 2


def test_sequential_pipeline_runs_blocking_agents() -> None:
    """`Sequential.run` passes the input through every agent, storing one conversation."""
    writer = sync.Agent("writer", ScriptedChatClient(["A haiku."]))
    reviewer = sync.Agent("reviewer", ScriptedChatClient(["Good haiku."]))
    history = sync.InMemoryChatHistoryProvider()
    pipeline = sync.Sequential([writer, reviewer], history=history)
    result = pipeline.run("Write a haiku.", session="s")
    assert result.text == "Good haiku."
    assert [m.text for m in history.list_messages("s")] == [
        "Write a haiku.",
        "A haiku.",
        "Good haiku.",
    ]
    assert pipeline.agents == (writer, reviewer)
    assert pipeline.history is history


def test_handoff_workflow_runs_and_resumes_from_blocking_checkpoints(
    sync_history: sync.ChatHistoryProvider, session_id: str, tmp_path: Path
) -> None:
    """A handoff workflow built from blocking agents yields its events as a plain iterator,
    pauses for the user, and another workflow on the same stores resumes it."""
    triage = sync.Agent(
        "triage",
        ScriptedChatClient([calls(call("handoff_to_refunds", reason="refund"))]),
        description="Routes requests.",
    )
    refunds = sync.Agent("refunds", ScriptedChatClient(["Which order?", "Refunded order 7."]))
    store = sync.SQLCheckpointStore(f"sqlite+aiosqlite:///{tmp_path / 'checkpoints.db'}")

    def build() -> sync.HandoffWorkflow:
        return (
            sync.HandoffBuilder("support", [triage, refunds], history=sync_history)
            .add_handoff(triage, refunds)
            .with_checkpointing(store)
            .build()
        )

    workflow = build()
    events = list(workflow.run("My order arrived broken", session=session_id))
    assert [type(event) for event in events] == [
        AgentMessage,
        Handoff,
        AgentMessage,
        UserInputRequest,
    ]
    request = events[-1]
    assert isinstance(request, UserInputRequest)
    assert workflow.pending_requests(session=session_id) == [request]
    assert workflow.routes() == {"triage": ["refunds"], "refunds": []}
    assert workflow.history is sync_history
    assert workflow.checkpoints is store

    resumed = build()
    later = list(resumed.run(responses={request.request_id: "order 7"}, session=session_id))
    assert isinstance(later[0], AgentMessage)
    assert later[0].text == "Refunded order 7."
    assert store.get_checkpoint("support", session_id) is not None
    store.close()


def test_handoff_run_goes_only_as_far_as_read(session_id: str) -> None:
    """Events are fetched one at a time: stopping after the first event leaves the rest of
    the run undone (as with the async run)."""
    first = sync.Agent("first", ScriptedChatClient([calls(call("handoff_to_second"))]))
    second_client = ScriptedChatClient(["done"])
    second = sync.Agent("second", second_client)
    workflow = sync.HandoffBuilder("lazy", [first, second]).build()
    events = workflow.run("go", session=session_id)
    assert isinstance(next(events), AgentMessage)
    events.close()  # type: ignore[attr-defined]
    assert second_client.requests == []


def test_handoff_termination_condition_and_approvals_through_the_blocking_face(
    session_id: str,
) -> None:
    """A sync termination condition works, and tool approvals are answered through
    `run(responses=...)`."""

    @tool(approval="always")
    def refund(order: int) -> str:
        """Refund an order."""
        return f"refunded {order}"

    agent = sync.Agent(
        "desk",
        ScriptedChatClient([calls(call("refund", order=7)), "All done."]),
        tools=[refund],
    )
    other = sync.Agent("other", ScriptedChatClient([]))
    workflow = sync.HandoffBuilder(
        "approvals",
        [agent, other],
        termination_condition=lambda conversation: conversation[-1].text == "All done.",
    ).build()
    events = list(workflow.run("refund order 7", session=session_id))
    approval = events[-1]
    assert isinstance(approval, ToolApprovalRequest)
    rest = list(workflow.run(responses={approval.request_id: True}, session=session_id))
    assert isinstance(rest[-1], WorkflowOutput)
    assert rest[-1].reason == "termination_condition"
