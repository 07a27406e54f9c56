"""Routing homework questions: a triage agent hands off to a math tutor or a history tutor.

The Agent Framework / OpenAI Agents "tutor routing" scenario on memweave. Triage decides who
answers each question and hands the conversation over with a `handoff_to_<tutor>` tool call,
saying why and what to do; a tutor hands back to triage when the next question is not theirs.
The conversation is stored once (in memory here), and each agent sees its own view of it.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/tutor_routing.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/tutor_routing.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    HandoffWorkflow,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.testing import ScriptedChatClient

QUESTIONS = [
    "What is the derivative of x^3 + 2x?",
    "And who was the first emperor of Rome?",
]

TRIAGE = (
    "You are the triage agent. You never answer homework questions yourself: hand math "
    "questions to the math tutor and history questions to the history tutor, saying why and "
    "what they should answer."
)
MATH = (
    "You are the math tutor. Explain math step by step, briefly. If the user asks about "
    "anything other than math, hand the conversation back to triage."
)
HISTORY = (
    "You are the history tutor. Answer history questions with the key dates, briefly. If the "
    "user asks about anything other than history, hand the conversation back to triage."
)


def build_workflow(client: ChatClient) -> HandoffWorkflow:
    """Triage may route to either tutor; each tutor may route back to triage."""
    triage = Agent("triage", client, instructions=TRIAGE, description="Routes questions.")
    math_tutor = Agent(
        "math_tutor", client, instructions=MATH, description="Answers math questions."
    )
    history_tutor = Agent(
        "history_tutor", client, instructions=HISTORY, description="Answers history questions."
    )
    return (
        HandoffBuilder("tutors", [triage, math_tutor, history_tutor])
        .add_handoff(triage, [math_tutor, history_tutor])
        .add_handoff([math_tutor, history_tutor], triage)
        .build()
    )


def show(event: WorkflowEvent) -> None:
    """Print an event the way a chat UI would show it."""
    if isinstance(event, Handoff):
        print(f"  [{event.source} -> {event.target}: {event.reason}]")
    elif isinstance(event, UserInputRequest):
        print(f"  [{event.agent} waits for the user]")
    elif isinstance(event, AgentMessage) and event.text:
        print(f"{event.agent}: {event.text}")
    elif isinstance(event, WorkflowOutput):
        print(f"  [run ended: {event.detail}]")


async def amain(client: ChatClient, questions: Sequence[str] = QUESTIONS) -> list[WorkflowEvent]:
    """Ask each question in turn, then end the run; return every event."""
    workflow = build_workflow(client)
    seen: list[WorkflowEvent] = []
    pending = list(questions)
    print(f"user: {pending[0]}")
    events = workflow.run(pending.pop(0))
    while True:
        request = None
        async for event in events:
            seen.append(event)
            show(event)
            if isinstance(event, UserInputRequest):
                request = event
        if request is None:
            return seen
        if not pending:
            events = workflow.run(responses={request.request_id: request.terminate()})
            continue
        print(f"user: {pending[0]}")
        events = workflow.run(responses={request.request_id: pending.pop(0)})


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def handoff(target: str, **arguments: str) -> ChatMessage:
    """A reply that calls the `handoff_to_<target>` tool."""
    call = ToolCall(
        id=f"call_{target}", name=f"handoff_to_{target}", arguments=json.dumps(arguments)
    )
    return ChatMessage.assistant(tool_calls=[call])


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system = messages[0].text
    question = [m.text for m in messages if m.role == "user"][-1]
    is_math = "derivative" in question
    if system == TRIAGE:
        target = "math_tutor" if is_math else "history_tutor"
        return handoff(target, reason="homework question", task=question)
    if system == MATH:
        if is_math:
            return "d/dx (x^3 + 2x) = 3x^2 + 2."
        return handoff("triage", reason="not a math question")
    return "Augustus became the first Roman emperor in 27 BC."


def scripted_client() -> ScriptedChatClient:
    """A model that needs no server: `scripted_model` answers every request."""
    return ScriptedChatClient(scripted_model)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the example on a server, or offline with `--scripted`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripted", action="store_true", help="run offline, on a scripted model")
    args = parser.parse_args(argv)
    asyncio.run(amain(scripted_client() if args.scripted else make_client()))


if __name__ == "__main__":
    main()
