"""Builders for the LangGraph-pattern tests: backends, scripted workflows that pause, and the
processes that resume them (`python -m tests.orchestration._patterns <scenario> <phase> ...`).

Each scenario builds the same workflow in every process from the same URL; `start` runs it
until it waits for a tool approval and exits, `finish` (a fresh process) approves and runs it
to its end. Models are functions of what they are sent, so a new process needs no memory of
the old one. Each phase prints a JSON report on stdout.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    END,
    Agent,
    CheckpointStore,
    Command,
    HandoffBuilder,
    HandoffWorkflow,
    InjectedState,
    Team,
    ToolApprovalRequest,
    WorkflowEvent,
    WorkflowOutput,
    checkpoint_store_from_url,
    tool,
)
from memweave.providers import from_url
from memweave.providers.base import ChatHistoryProvider
from memweave.testing import ScriptedChatClient
from tests.orchestration._builders import redis_prefix_cleanup

ROOT = Path(__file__).resolve().parents[2]


def call(name: str, call_id: str | None = None, **arguments: Any) -> ToolCall:
    """A tool call as a model would write it."""
    return ToolCall(
        id=call_id or f"call_{uuid.uuid4().hex[:8]}", name=name, arguments=json.dumps(arguments)
    )


def calls(*tool_calls: ToolCall, text: str = "") -> ChatMessage:
    """An assistant reply carrying `tool_calls` (and optional text)."""
    return ChatMessage.assistant(text, tool_calls=tool_calls)


async def collect(events: AsyncIterator[WorkflowEvent]) -> list[WorkflowEvent]:
    """Every event of a run."""
    return [event async for event in events]


def kinds(events: Sequence[WorkflowEvent]) -> list[str]:
    """The events' class names."""
    return [type(event).__name__ for event in events]


def scripted(name: str, replies: Any, **options: Any) -> Agent:
    """An agent named `name` whose model answers with `replies` (see `ScriptedChatClient`)."""
    return Agent(name, ScriptedChatClient(replies), **options)


def client_of(agent: Agent) -> ScriptedChatClient:
    """The scripted model of an agent built by `scripted`."""
    client = agent.client
    assert isinstance(client, ScriptedChatClient)
    return client


# -- real backends ----------------------------------------------------------------------------


@dataclass
class Backend:
    """A history provider and a checkpoint store on one real server (or SQLite file)."""

    url: str
    prefix: str
    history: ChatHistoryProvider
    store: CheckpointStore

    def reopen(self) -> tuple[ChatHistoryProvider, CheckpointStore]:
        """A second history and store on the same data, as another process would build."""
        options = {"namespace": self.prefix} if self.url.startswith("redis") else {}
        return from_url(self.url, **options), checkpoint_store_from_url(self.url, **options)


@asynccontextmanager
async def open_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    """Open a SQLite file or Redis backend for one test; close it and delete what it wrote."""
    prefix = f"mwt-{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        url, options = f"sqlite+aiosqlite:///{tmp_path / 'patterns.db'}", {}
    else:
        url, options = request.getfixturevalue("redis_url"), {"namespace": prefix}
    backend = Backend(
        url, prefix, from_url(url, **options), checkpoint_store_from_url(url, **options)
    )
    try:
        yield backend
    finally:
        await backend.history.aclose()
        await backend.store.aclose()
        if kind == "redis":
            await redis_prefix_cleanup(url, prefix)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A history and checkpoint store on a SQLite file or on Redis (import it into a test
    module to use it)."""
    async with open_backend(request.param, request, tmp_path) as opened:
        yield opened


def run_phase(scenario: str, phase: str, url: str, session_id: str, prefix: str) -> Any:
    """Run one phase of a scenario in a new Python process and return its report."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.orchestration._patterns",
            scenario,
            phase,
            url,
            session_id,
            prefix,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- scenario: supervisor with a fan-out, a worker's tool approval, and an end route -----------


def _since_user(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return list(messages[index + 1 :])
    return list(messages)


@tool(approval="always")
def fetch_source(topic: str) -> str:
    """Fetch a source on a topic."""
    return f"source on {topic}"


def boss_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    said = [m for m in _since_user(messages) if m.role == "assistant" and m.text and m.name]
    if not said:
        return calls(
            call("handoff_to_researcher", "d1", task="find a source on tea"),
            call("handoff_to_writer", "d2", task="draft the intro"),
        )
    answer = "Report: " + " / ".join(m.text for m in said)
    return calls(call("end_run", "e1", answer=answer))


def researcher_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    last = messages[-1]
    if last.role == "tool":
        return f"Found {last.text}."
    return calls(call("fetch_source", "f1", topic="tea"))


def build_supervisor(history: ChatHistoryProvider, store: CheckpointStore) -> HandoffWorkflow:
    """A supervisor that fans out to two workers and ends the run once they answered."""
    boss = Agent("boss", ScriptedChatClient(boss_model))
    researcher = Agent("researcher", ScriptedChatClient(researcher_model), tools=[fetch_source])
    writer = Agent("writer", ScriptedChatClient(lambda m, t, o: "Intro drafted."))
    return (
        HandoffBuilder("newsroom", [boss, researcher, writer], history=history)
        .with_supervisor(boss)
        .add_handoff(boss, END)
        .with_checkpointing(store)
        .build()
    )


# -- scenario: typed shared state through tools, a handoff payload and a Command ---------------


class Order(BaseModel):
    """The shared state of the order scenario."""

    items: list[str] = []
    """What the clerk added."""
    stage: str = "new"
    """Where the order is."""
    approved: bool = False
    """Whether the manager approved it."""


@tool
def add_item(item: str, order: Annotated[Order, InjectedState]) -> str:
    """Add an item to the order."""
    order.items.append(item)
    return f"{len(order.items)} items"


@tool(approval="always")
def approve_order(order: Annotated[Order, InjectedState]) -> Command:
    """Approve the order and end the run."""
    return Command(goto=END, update={"approved": True}, result=f"approved {len(order.items)} items")


def clerk_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    if messages[-1].role == "user":
        return calls(call("add_item", "a1", item="tea"), call("add_item", "a2", item="cake"))
    return calls(call("handoff_to_manager", "h1", task="approve", update={"stage": "review"}))


def build_state(history: ChatHistoryProvider, store: CheckpointStore) -> HandoffWorkflow:
    """A clerk that fills the order state and hands it to a manager who approves it."""
    clerk = Agent("clerk", ScriptedChatClient(clerk_model), tools=[add_item])
    manager = Agent(
        "manager",
        ScriptedChatClient(lambda m, t, o: calls(call("approve_order", "p1"))),
        tools=[approve_order],
    )
    return (
        HandoffBuilder("orders", [clerk, manager], history=history)
        .add_handoff(clerk, manager)
        .add_handoff(manager, END)
        .with_state(Order)
        .with_checkpointing(store)
        .build()
    )


# -- scenario: a nested team whose tool approval pauses the parent ------------------------------


@tool(approval="always")
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


def lead_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    said = [m for m in _since_user(messages) if m.role == "assistant" and m.text]
    if not said:
        return calls(call("handoff_to_searcher", "s1", task="search tea"))
    return f"Summary: {said[-1].text}"


def searcher_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    if messages[-1].role == "tool":
        return f"Found {messages[-1].text}."
    return calls(call("search", "q1", query="tea"))


def top_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    said = [m for m in _since_user(messages) if m.role == "assistant" and m.name == "research"]
    if not said:
        return calls(call("handoff_to_research", "r1", task="research tea"))
    return f"Final: {said[-1].text}"


def build_team(history: ChatHistoryProvider, store: CheckpointStore) -> HandoffWorkflow:
    """A top supervisor whose worker is a nested supervisor team."""
    lead = Agent("lead", ScriptedChatClient(lead_model))
    searcher = Agent("searcher", ScriptedChatClient(searcher_model), tools=[search])
    research = (
        HandoffBuilder("research", [lead, searcher], history=history)
        .with_supervisor(lead)
        .with_checkpointing(store)
        .build()
    )
    top = Agent("top", ScriptedChatClient(top_model))
    team = Team(research, name="research", description="Researches a topic.")
    return (
        HandoffBuilder("top", [top, team], history=history)
        .with_supervisor(top)
        .with_checkpointing(store)
        .build()
    )


# -- scenario: an agent looping on itself, paused at a tool approval, then ending the run ------


@tool(approval="always")
def deploy(target: str) -> str:
    """Deploy to a target."""
    return f"deployed to {target}"


def looper_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    last = messages[-1]
    if last.role == "user":
        return calls(call("handoff_to_looper", "l1", task="deploy to staging"))
    if last.role == "system" and "Task: deploy to staging" in last.text:
        return calls(call("deploy", "p1", target="staging"))
    if last.role == "tool" and last.text.startswith("deployed"):
        return calls(call("end_run", "e1", answer=f"Done: {last.text}."))
    raise AssertionError(f"unexpected request ending with {last!r}")


def build_loop(history: ChatHistoryProvider, store: CheckpointStore) -> HandoffWorkflow:
    """An agent that routes to itself with a task, deploys (with approval) and ends the run."""
    looper = Agent("looper", ScriptedChatClient(looper_model), tools=[deploy])
    return (
        HandoffBuilder("loop", [looper, Agent("idle", ScriptedChatClient([]))], history=history)
        .add_handoff(looper, [looper, END])
        .with_checkpointing(store)
        .build()
    )


SCENARIOS = {
    "supervisor": build_supervisor,
    "state": build_state,
    "team": build_team,
    "loop": build_loop,
}
OPENING = {
    "supervisor": "Write a report on tea.",
    "state": "Order tea and cake.",
    "team": "Tell me about tea.",
    "loop": "Ship it.",
}


def _report_events(events: Sequence[WorkflowEvent]) -> list[str]:
    return kinds(events)


async def _phase(scenario: str, phase: str, url: str, session_id: str, prefix: str) -> Any:
    options = {"namespace": prefix} if url.startswith("redis") else {}
    history = from_url(url, **options)
    store = checkpoint_store_from_url(url, **options)
    workflow = SCENARIOS[scenario](history, store)
    try:
        if phase == "start":
            events = await collect(workflow.run(OPENING[scenario], session=session_id))
            return {"events": _report_events(events)}
        (request,) = await workflow.pending_requests(session=session_id)
        assert isinstance(request, ToolApprovalRequest)
        state_before = await workflow.get_state(session=session_id)
        events = await collect(
            workflow.run(responses={request.request_id: request.approve()}, session=session_id)
        )
        last = events[-1]
        state_after = await workflow.get_state(session=session_id)
        sessions = await history.list_sessions(prefix=session_id)
        stored = {
            s: [[m.role, m.name, m.text] for m in await history.list_messages(s)] for s in sessions
        }
        return {
            "request_agent": request.agent,
            "events": _report_events(events),
            "answer": last.answer if isinstance(last, WorkflowOutput) else None,
            "state_before": state_before.model_dump() if state_before is not None else None,
            "state_after": state_after.model_dump() if state_after is not None else None,
            "stored": stored,
        }
    finally:
        await history.aclose()
        await store.aclose()


def main(argv: list[str]) -> None:
    """Run one phase: `<scenario> <start|finish> <url> <session id> <redis prefix>`."""
    scenario, phase, url, session_id, prefix = argv
    print(json.dumps(asyncio.run(_phase(scenario, phase, url, session_id, prefix))))


if __name__ == "__main__":
    main(sys.argv[1:])
