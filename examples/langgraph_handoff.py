"""LangGraph handoffs that survive a restart: checkpoints and long-term memory in memweave.

The multi-agent network of LangGraph's multi-agent guide: a travel advisor and a hotel advisor
hand the conversation to each other with `Command(goto=...)` (a handoff is a `transfer_to_*`
tool call), and a `human` node waits for the traveller with `interrupt()`. The graph's
checkpoints go to `MemweaveCheckpointSaver`, and what the traveller says goes to
`MemweaveStore` as long-term memory, which the advisors search before answering.

The first process runs until the graph waits for the traveller, then exits. A second process
(this script, started again with `--phase resume`) resumes the same thread from the stored
checkpoint; the travel advisor hands off to the hotel advisor, which recalls the traveller's
wishes from the store. The models are LangChain's fake chat models, so it runs offline:

    python examples/langgraph_handoff.py                      # SQLite file in a temp folder
    python examples/langgraph_handoff.py --url redis://localhost:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command, interrupt

from memweave.integrations.langgraph import MemweaveCheckpointSaver, MemweaveStore

Phase = Literal["start", "resume"]

INSTRUCTIONS = {
    "travel_advisor": (
        "You are a travel expert who recommends destinations. If the traveller asks about "
        "hotels, call transfer_to_hotel_advisor."
    ),
    "hotel_advisor": (
        "You are a hotel expert. If the traveller asks about destinations, call "
        "transfer_to_travel_advisor."
    ),
}
TRAVELLER = {
    "start": "I want a warm beach in December, and I love snorkeling.",
    "resume": "Sounds good! Which hotel should I book there?",
}


def handoff(target: str) -> AIMessage:
    """A model message that hands the conversation to `target`."""
    call = {"name": f"transfer_to_{target}", "args": {}, "id": f"call-{uuid.uuid4().hex[:8]}"}
    return AIMessage(content="", tool_calls=[call])


def fake_models(phase: Phase) -> dict[str, GenericFakeChatModel]:
    """What each advisor's model says in each process (LangChain's offline fake models)."""
    if phase == "start":
        travel = [AIMessage(content="Aruba: 28 °C in December, with reefs right off the beach.")]
        hotel: list[AIMessage] = []
    else:
        travel = [handoff("hotel_advisor")]
        hotel = [AIMessage(content="Book the Boardwalk Hotel in Aruba, a short walk from reefs.")]
    return {
        "travel_advisor": GenericFakeChatModel(messages=iter(travel)),
        "hotel_advisor": GenericFakeChatModel(messages=iter(hotel)),
    }


class State(MessagesState):
    """The conversation, who holds it, and what the last advisor recalled from memory."""

    user_id: str
    active_agent: str
    recalled: list[str]


def _last_human(messages: Sequence[BaseMessage]) -> HumanMessage | None:
    return next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)


def make_advisor(name: str, model: GenericFakeChatModel) -> Any:
    """An advisor node: remembers the traveller's words, recalls related ones, answers or
    hands off."""

    async def advisor(state: State, *, store: BaseStore) -> Command[str]:
        memories = ("travellers", state["user_id"], "memories")
        said = _last_human(state["messages"])
        if said is not None and said.id is not None:
            await store.aput(memories, said.id, {"text": said.text})
        query = said.text if said is not None else ""
        recalled = [hit.value["text"] for hit in await store.asearch(memories, query=query)]
        prompt = INSTRUCTIONS[name] + "\nThe traveller told you before: " + "; ".join(recalled)
        response = await model.ainvoke([SystemMessage(prompt), *state["messages"]])
        response.name = name
        if response.tool_calls:
            call = response.tool_calls[0]
            target = call["name"].removeprefix("transfer_to_")
            done = ToolMessage(
                content=f"Transferred to {target}.", tool_call_id=call["id"], name=call["name"]
            )
            return Command(
                goto=target,
                update={"messages": [response, done], "active_agent": target},
            )
        return Command(
            goto="human",
            update={"messages": [response], "active_agent": name, "recalled": recalled},
        )

    return advisor


def human(state: State) -> Command[str]:
    """Wait for the traveller (the graph stops here until resumed), then go back to the
    advisor who asked."""
    answer = interrupt("Waiting for the traveller.")
    return Command(goto=state["active_agent"], update={"messages": [HumanMessage(answer)]})


def build_graph(
    models: dict[str, GenericFakeChatModel],
    checkpointer: MemweaveCheckpointSaver,
    store: MemweaveStore,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The network: both advisors and the human node, persisted by memweave."""
    builder = StateGraph(State)
    for name, model in models.items():
        builder.add_node(name, make_advisor(name, model))
    builder.add_node("human", human)
    builder.add_edge(START, "travel_advisor")
    return builder.compile(checkpointer=checkpointer, store=store)


async def amain(url: str, thread_id: str, phase: Phase) -> dict[str, Any]:
    """Run one process's part of the conversation; return the thread's state afterwards."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    async with (
        MemweaveCheckpointSaver.from_url(url) as checkpointer,
        MemweaveStore.from_url(url, index={"fields": ["text"]}) as store,
    ):
        graph = build_graph(fake_models(phase), checkpointer, store)
        if phase == "start":
            payload: Any = {
                "messages": [HumanMessage(TRAVELLER["start"])],
                "user_id": "traveller-7",
                "active_agent": "travel_advisor",
                "recalled": [],
            }
        else:
            payload = Command(resume=TRAVELLER["resume"])
        print(f"traveller: {TRAVELLER[phase]}")
        async for update in graph.astream(payload, config, stream_mode="updates"):
            for node, change in update.items():
                for message in (
                    (change or {}).get("messages", []) if isinstance(change, dict) else []
                ):
                    if isinstance(message, AIMessage) and message.content:
                        print(f"{node}: {message.content}")
                    elif isinstance(message, ToolMessage):
                        print(f"  [{message.content}]")
        state = await graph.aget_state(config)
        print(f"  [{state.values['active_agent']} recalled: {state.values['recalled']}]")
        print(f"  [waiting at: {list(state.next)}]")
        return dict(state.values)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the first part here and the second in a new process (or one `--phase`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="memweave backend URL (default: SQLite in a temp folder)")
    parser.add_argument("--thread", default=f"trip-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--phase", choices=["all", "start", "resume"], default="all")
    args = parser.parse_args(argv)
    folder = None
    if args.url is None:
        folder = tempfile.mkdtemp(prefix="memweave-langgraph-")
        args.url = f"sqlite+aiosqlite:///{os.path.join(folder, 'trip.db')}"
    if args.phase != "all":
        asyncio.run(amain(args.url, args.thread, args.phase))
        return
    asyncio.run(amain(args.url, args.thread, "start"))
    print("--- this process stops; a new one resumes the thread from memweave ---", flush=True)
    resume = [sys.executable, os.path.abspath(__file__), "--phase", "resume"]
    subprocess.run([*resume, "--url", args.url, "--thread", args.thread], check=True)  # noqa: S603


if __name__ == "__main__":
    main()
