"""A swarm: a travel advisor and a hotel advisor hand the traveller to each other, then end.

LangGraph's "network" (swarm) scenario on memweave. Each advisor may hand the conversation to
the other with a `handoff_to_<agent>` tool call, carrying a structured update of the trip (a
typed shared state, `with_state(Trip)`), and may end the run with its answer (`end_run`).
Tools read and change the trip through a parameter the model never sees
(`Annotated[Trip, InjectedState]`). When an advisor answers without handing off, the run
waits for the traveller, and the traveller's answer goes to that advisor: the active agent.
The conversation, the checkpoints and the trip live in one SQLite file.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/swarm.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/swarm.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    END,
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    InjectedState,
    SQLCheckpointStore,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
    tool,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

TRAVELLER = [
    "I want a warm beach in December, and I love snorkeling. Where should I go and stay?",
    "Yes, book it please. What should I pack?",
]

TRAVEL = (
    "You are a travel expert who recommends destinations and packing lists. Hand hotel "
    "questions to the hotel advisor, with the destination in the trip update. When the "
    "traveller has everything, end the run with your answer."
)
HOTEL = (
    "You are a hotel expert. Find and book hotels at the trip's destination. Hand questions "
    "about destinations or packing to the travel advisor."
)

HOTELS = {"Aruba": ["Boardwalk Hotel (5 minutes from the reefs)", "Palm Beach Resort"]}


class Trip(BaseModel):
    """What the advisors know about the trip, shared by both."""

    destination: str | None = None
    interests: list[str] = []
    hotel: str | None = None


@tool
def find_hotels(trip: Annotated[Trip, InjectedState]) -> list[str]:
    """List hotels at the trip's destination."""
    return HOTELS.get(trip.destination or "", [])


@tool
def book_hotel(name: str, trip: Annotated[Trip, InjectedState]) -> str:
    """Book a hotel for the trip."""
    trip.hotel = name
    return f"Booked {name} in {trip.destination}."


def show(event: WorkflowEvent) -> None:
    """Print an event as a chat log line."""
    if isinstance(event, Handoff):
        print(f"  [{event.source} -> {event.target}: {event.task}]")
    elif isinstance(event, AgentMessage):
        for call in event.message.tool_calls:
            if call.name in ("find_hotels", "book_hotel"):
                print(f"  [{event.agent} calls {call.name}{call.arguments}]")
        if event.text:
            print(f"{event.agent}: {event.text}")
    elif isinstance(event, UserInputRequest):
        print(f"  [{event.agent} waits for the traveller]")
    elif isinstance(event, WorkflowOutput):
        print(f"  [run {event.reason}; trip: {event.state}]")


async def amain(client: ChatClient, *, db_path: str) -> list[WorkflowEvent]:
    """Talk the trip through, print what happens, and return every event."""
    url = f"sqlite+aiosqlite:///{db_path}"
    travel = Agent("travel_advisor", client, instructions=TRAVEL, description="Destinations.")
    hotel = Agent(
        "hotel_advisor",
        client,
        instructions=HOTEL,
        description="Finds and books hotels.",
        tools=[find_hotels, book_hotel],
    )
    seen: list[WorkflowEvent] = []
    replies = list(TRAVELLER)
    async with from_url(url) as history, SQLCheckpointStore(url) as checkpoints:
        swarm = (
            HandoffBuilder("trip", [travel, hotel], history=history)
            .add_handoff(travel, [hotel, END])
            .add_handoff(hotel, [travel, END])
            .with_state(Trip)
            .with_checkpointing(checkpoints)
            .build()
        )
        print(f"traveller: {replies[0]}")
        events = swarm.run(replies.pop(0), session="trip-7")
        while True:
            waiting = None
            async for event in events:
                seen.append(event)
                show(event)
                if isinstance(event, UserInputRequest):
                    waiting = event
            if waiting is None:
                break
            if not replies:  # nothing more to say: end the run
                events = swarm.run(
                    responses={waiting.request_id: waiting.terminate()}, session="trip-7"
                )
                continue
            print(f"traveller: {replies[0]}")
            events = swarm.run(responses={waiting.request_id: replies.pop(0)}, session="trip-7")
        print(f"stored trip: {await swarm.get_state(session='trip-7')!r}")
    return seen


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def reply(messages: list[ChatMessage], text: str = "", **calls: dict[str, Any]) -> ChatMessage:
    """A reply to `messages` with `text` and a call of each tool named in `calls`."""
    made = [
        ToolCall(id=f"call_{len(messages)}_{name}", name=name, arguments=json.dumps(arguments))
        for name, arguments in calls.items()
    ]
    return ChatMessage.assistant(text, tool_calls=made)


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system, last = messages[0].text, messages[-1]
    if system == TRAVEL:
        if last.role == "user":
            update = {"destination": "Aruba", "interests": ["snorkeling"]}
            return reply(
                messages,
                "Aruba: 28 °C in December, with reefs right off the beach.",
                handoff_to_hotel_advisor={"task": "Find a hotel near the reefs.", "update": update},
            )
        return reply(
            messages,
            "Pack reef-safe sunscreen, a rash guard and your own snorkel mask. Enjoy Aruba!",
            end_run={},
        )
    if last.role == "system":  # the travel advisor handed the traveller over
        return reply(messages, find_hotels={})
    if last.role == "tool" and last.text.startswith("["):
        return f"{json.loads(last.text)[0]} is the best fit. Shall I book it?"
    if last.role == "user":
        return reply(messages, book_hotel={"name": "Boardwalk Hotel"})
    return reply(
        messages,
        f"{last.text} The travel advisor will help with packing.",
        handoff_to_travel_advisor={"task": "Packing list for snorkeling in Aruba."},
    )


def scripted_client() -> ScriptedChatClient:
    """A model that needs no server: `scripted_model` answers every request."""
    return ScriptedChatClient(scripted_model)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the example on a server, or offline with `--scripted`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripted", action="store_true", help="run offline, on a scripted model")
    parser.add_argument("--db", help="the SQLite file to store in (default: a temporary one)")
    args = parser.parse_args(argv)
    client = scripted_client() if args.scripted else make_client()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(amain(client, db_path=args.db or os.path.join(folder, "trip.db")))


if __name__ == "__main__":
    main()
