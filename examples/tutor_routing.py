"""Routing homework questions: a triage agent hands off to a math tutor or a history tutor.

The Agent Framework / OpenAI Agents "tutor routing" scenario on memweave. Triage decides who
answers each question and hands the conversation over with a `handoff_to_<tutor>` tool call,
saying why and what to do; a tutor hands back to triage when the next question is not theirs.
The conversation is stored once, and each agent sees its own view of it.

Run it against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/tutor_routing.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from memweave.llm import ChatClient, OpenAIChatClient
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


def main() -> None:
    """Run the example against the server the environment names."""
    asyncio.run(amain(make_client()))


if __name__ == "__main__":
    main()
