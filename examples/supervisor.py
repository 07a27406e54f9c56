"""A supervisor and its workers: a researcher and a mathematician answer to a supervisor.

LangGraph's "supervisor" scenario on memweave. `HandoffBuilder.with_supervisor` gives the
supervisor a `handoff_to_<worker>` tool per worker, whose `task` argument is the worker's
task. A worker that answers hands control back to the supervisor by itself, with no tool
call, so the supervisor decides every next step: here it gives the researcher two tasks and
the mathematician one in answer to a single question, then ends the run with its answer
(`add_handoff(supervisor, END)` gives it an `end_run` tool). The conversation and the
checkpoints are stored in one SQLite file.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/supervisor.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/supervisor.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Annotated, Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    END,
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    SQLCheckpointStore,
    WorkflowEvent,
    WorkflowOutput,
    tool,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

QUESTION = "How many people live in Lisbon and Porto together, and which one is the capital?"

SUPERVISOR = (
    "You are the supervisor of a researcher and a mathematician. Give one of them one task at "
    "a time. When you have everything you need, end the run with your answer."
)
RESEARCHER = "You are the researcher. Look cities up with lookup_city and report only the facts."
MATH = "You are the mathematician. Use the add tool for sums and answer with the result."

CITIES: dict[str, dict[str, Any]] = {
    "lisbon": {"population": 545_923, "country": "Portugal", "capital": True},
    "porto": {"population": 231_800, "country": "Portugal", "capital": False},
}


@tool
def lookup_city(city: Annotated[str, "The city's name"]) -> dict[str, Any]:
    """Return a city's population, its country and whether it is the capital."""
    return CITIES.get(city.lower(), {"error": f"no data on {city}"})


@tool
def add(numbers: Annotated[list[int], "The numbers to add"]) -> int:
    """Add whole numbers."""
    return sum(numbers)


def show(event: WorkflowEvent) -> None:
    """Print an event as a log line."""
    if isinstance(event, Handoff):
        how = "returns to" if event.automatic else "delegates to"
        task = f": {event.task}" if event.task else ""
        print(f"  [{event.source} {how} {event.target}{task}]")
    elif isinstance(event, AgentMessage):
        for call in event.message.tool_calls:
            if not call.name.startswith("handoff_to_") and call.name != "end_run":
                print(f"  [{event.agent} calls {call.name}{call.arguments}]")
        if event.text:
            print(f"{event.agent}: {event.text}")
    elif isinstance(event, WorkflowOutput):
        print(f"answer ({event.reason}): {event.answer}")


async def amain(client: ChatClient, *, db_path: str) -> list[WorkflowEvent]:
    """Ask the question, print what happens, and return every event."""
    url = f"sqlite+aiosqlite:///{db_path}"
    supervisor = Agent("supervisor", client, instructions=SUPERVISOR)
    researcher = Agent(
        "researcher",
        client,
        instructions=RESEARCHER,
        description="Looks up facts about cities.",
        tools=[lookup_city],
    )
    mathematician = Agent(
        "mathematician", client, instructions=MATH, description="Does arithmetic.", tools=[add]
    )
    events: list[WorkflowEvent] = []
    async with from_url(url) as history, SQLCheckpointStore(url) as checkpoints:
        workflow = (
            HandoffBuilder("cities", [supervisor, researcher, mathematician], history=history)
            .with_supervisor(supervisor, [researcher, mathematician])
            .add_handoff(supervisor, END)
            .with_checkpointing(checkpoints)
            .build()
        )
        print(f"user: {QUESTION}")
        async for event in workflow.run(QUESTION, session="cities-1"):
            events.append(event)
            show(event)
    return events


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def calling(messages: list[ChatMessage], *calls: tuple[str, dict[str, Any]]) -> ChatMessage:
    """A reply to `messages` that calls each `(tool name, arguments)`, with fresh call ids."""
    made = [
        ToolCall(id=f"call_{len(messages)}_{i}", name=name, arguments=json.dumps(arguments))
        for i, (name, arguments) in enumerate(calls)
    ]
    return ChatMessage.assistant(tool_calls=made)


def latest_task(messages: list[ChatMessage]) -> str:
    """The task of the newest handoff note the agent was shown."""
    for message in reversed(messages):
        if message.role == "system" and "Task: " in message.text:
            return message.text.split("Task: ", 1)[1].splitlines()[0]
    return ""


def results_since_last_reply(messages: list[ChatMessage]) -> list[Any]:
    """The tool results at the end of `messages`, decoded."""
    results: list[Any] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.insert(0, json.loads(message.text))
    return results


SUPERVISOR_STEPS = [
    ("handoff_to_researcher", {"task": "Find the populations of Lisbon and Porto."}),
    ("handoff_to_mathematician", {"task": "Add 545923 and 231800."}),
    ("handoff_to_researcher", {"task": "Which of Lisbon and Porto is the capital?"}),
    ("end_run", {"answer": "About 777,723 people live in the two cities; Lisbon is the capital."}),
]


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system, last = messages[0].text, messages[-1]
    if system == SUPERVISOR:
        done = sum(1 for m in messages if m.role == "assistant" and m.tool_calls)
        return calling(messages, SUPERVISOR_STEPS[done])
    task = latest_task(messages)
    if system == RESEARCHER:
        if last.role != "tool":
            cities = ["Lisbon", "Porto"]
            return calling(messages, *[("lookup_city", {"city": city}) for city in cities])
        facts = dict(zip(["Lisbon", "Porto"], results_since_last_reply(messages), strict=True))
        if "capital" in task:
            return next(f"{city} is the capital." for city, f in facts.items() if f["capital"])
        return "; ".join(f"{city}: {f['population']} people" for city, f in facts.items())
    if last.role != "tool":
        return calling(messages, ("add", {"numbers": [int(n) for n in re.findall(r"\d+", task)]}))
    return f"The sum is {results_since_last_reply(messages)[0]}."


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
        asyncio.run(amain(client, db_path=args.db or os.path.join(folder, "cities.db")))


if __name__ == "__main__":
    main()
