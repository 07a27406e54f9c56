"""Agents as tools: a trip planner calls a researcher and an accountant, each an agent.

LangGraph's "supervisor (tool-calling)" scenario on memweave. `Agent.as_tool()` turns an
agent into a tool with one argument, `task`; the planner's model calls both in one reply, so
they run concurrently, and their final answers come back as the tool results. The researcher
has a tool of its own. Every worker's turn is stored once, in a sub-session of the planner's
history (here a SQLite file), linked from the tool result, and read back with the normal
history API. The run is streamed, so the workers' steps show up as they happen.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/agent_as_tool.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/agent_as_tool.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Annotated, Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    SUB_SESSION_KEY,
    Agent,
    AgentResponse,
    ReplyEvent,
    ToolCallEvent,
    tool,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

REQUEST = "Plan five days in Lisbon in May for two people, with a budget of 2000 EUR."

PLANNER = (
    "You are the trip planner. Ask the researcher about the destination and the accountant "
    "about the costs (call both at once), then write a short plan from their answers."
)
RESEARCHER = (
    "You are the researcher. Use the climate tool for the weather, then answer the task in "
    "one or two sentences."
)
ACCOUNTANT = "You are the accountant. Estimate the cost of the trip you are given, briefly."

CLIMATE = {("lisbon", "may"): "22 °C by day, 14 °C at night, mostly sunny, little rain"}


@tool
def get_climate(
    city: Annotated[str, "The city, e.g. 'Lisbon'"], month: Annotated[str, "The month"]
) -> str:
    """Return the usual weather of a city in a month."""
    return CLIMATE.get((city.lower(), month.lower()), "no climate data")


def build_planner(client: ChatClient, history: Any) -> Agent:
    """The planner, with the researcher and the accountant as its tools."""
    researcher = Agent(
        "researcher",
        client,
        instructions=RESEARCHER,
        description="Finds facts about a destination: weather, sights, transport.",
        tools=[get_climate],
    )
    accountant = Agent(
        "accountant",
        client,
        instructions=ACCOUNTANT,
        description="Estimates what a trip costs.",
    )
    return Agent(
        "planner",
        client,
        instructions=PLANNER,
        tools=[researcher.as_tool(), accountant.as_tool()],
        history=history,
    )


async def amain(client: ChatClient, *, db_path: str) -> AgentResponse:
    """Plan the trip, print each step and what was stored; return the planner's response."""
    async with from_url(f"sqlite+aiosqlite:///{db_path}") as history:
        planner = build_planner(client, history)
        print(f"user: {REQUEST}")
        async with planner.run_stream(REQUEST, session="trip-1") as stream:
            async for event in stream:
                if isinstance(event, ToolCallEvent):
                    args = json.loads(event.call.arguments)
                    print(f"  [{event.agent} calls {event.call.name}: {args}]")
                elif isinstance(event, ReplyEvent) and event.message.text:
                    print(f"{event.agent}: {event.message.text}")
        response = stream.response  # the same AgentResponse `planner.run` returns
        assert response is not None
        print("--- stored: the planner's session, and one sub-session per worker call ---")
        for message in await history.list_messages("trip-1"):
            sub_session = message.metadata.get(SUB_SESSION_KEY)
            if isinstance(sub_session, str):
                stored = await history.list_messages(sub_session)
                print(f"{sub_session}: {len(stored)} messages, answer: {stored[-1].text}")
    return response


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def calling(*calls: tuple[str, dict[str, Any]]) -> ChatMessage:
    """A reply that calls each `(tool name, arguments)`."""
    made = [
        ToolCall(id=f"call_{name}", name=name, arguments=json.dumps(arguments))
        for name, arguments in calls
    ]
    return ChatMessage.assistant(tool_calls=made)


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system, last = messages[0].text, messages[-1]
    if system == PLANNER:
        if last.role == "user":
            return calling(
                ("researcher", {"task": "What is the weather in Lisbon in May?"}),
                ("accountant", {"task": "Cost of 5 days in Lisbon for two, mid-range."}),
            )
        results = [m.text for m in messages if m.role == "tool"]
        return "Plan: walk Alfama and Belém, day trip to Sintra. " + " ".join(results)
    if system == RESEARCHER:
        if last.role == "user":
            return calling(("get_climate", {"city": "Lisbon", "month": "May"}))
        return f"Lisbon in May: {last.text}."
    return "About 1,700 EUR for two: 900 hotel, 500 food, 300 transport and tickets."


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
