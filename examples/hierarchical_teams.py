"""Hierarchical teams: a chief editor supervises a research team and a writing team.

LangGraph's "hierarchical" scenario on memweave. Each team is a supervisor workflow of its
own (a lead and two members), wrapped in a `Team` so it can be a worker of the top-level
supervisor. A team gets its task from the chief, works in a sub-session of its own
(`<session>/<team>`), and answers with its lead's final answer; the chief's conversation
stores only that answer, linked to the sub-session. Every lead ends its run with `end_run`.
Conversations and checkpoints are stored in one SQLite file.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/hierarchical_teams.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/hierarchical_teams.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    END,
    SUB_SESSION_KEY,
    Agent,
    AgentMessage,
    CheckpointStore,
    Handoff,
    HandoffBuilder,
    SQLCheckpointStore,
    Team,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.providers import from_url
from memweave.providers.base import ChatHistoryProvider
from memweave.testing import ScriptedChatClient

REQUEST = (
    "Write a two-sentence note on the Great Lisbon earthquake: when it struck, what it changed."
)

LEAD = (
    "Give your team members one task at a time. When the work is done, end the run with the "
    "result as your answer."
)
CHIEF = f"You are the chief editor, leading a research team and a writing team. {LEAD}"
RESEARCH_LEAD = f"You lead the research team: a searcher and a fact checker. {LEAD}"
WRITING_LEAD = f"You lead the writing team: a writer and an editor. {LEAD}"
SEARCHER = "You are the searcher. Answer with the facts you find, briefly."
FACT_CHECKER = "You are the fact checker. Say which facts hold and correct the others."
WRITER = "You are the writer. Draft the text you are asked for."
EDITOR = "You are the editor. Return the draft tightened, ready to publish."


def team(
    name: str,
    lead: Agent,
    members: list[Agent],
    description: str,
    history: ChatHistoryProvider,
    checkpoints: CheckpointStore,
) -> Team:
    """A supervisor workflow (a lead and its members) as one participant of another."""
    workflow = (
        HandoffBuilder(name, [lead, *members], history=history)
        .with_supervisor(lead)
        .add_handoff(lead, END)
        .with_checkpointing(checkpoints)
        .build()
    )
    return Team(workflow, name=name, description=description)


def show(event: WorkflowEvent) -> None:
    """Print an event, indented by how deep in the teams it happened."""
    if isinstance(event, Handoff | AgentMessage):
        indent = "    " * len(event.team)
        if isinstance(event, Handoff) and not event.automatic:
            task = event.task if len(event.task) <= 60 else f"{event.task[:57]}..."
            print(f"{indent}[{event.source} -> {event.target}: {task}]")
        elif isinstance(event, AgentMessage) and event.text:
            print(f"{indent}{event.agent}: {event.text}")
    elif isinstance(event, WorkflowOutput):
        print(f"final answer: {event.answer}")


async def amain(client: ChatClient, *, db_path: str) -> list[WorkflowEvent]:
    """Run the request through both teams, print what happens, and return every event."""
    url = f"sqlite+aiosqlite:///{db_path}"
    events: list[WorkflowEvent] = []
    async with from_url(url) as history, SQLCheckpointStore(url) as checkpoints:

        def agent(name: str, instructions: str, description: str = "") -> Agent:
            return Agent(name, client, instructions=instructions, description=description)

        research = team(
            "research_team",
            agent("research_lead", RESEARCH_LEAD),
            [
                agent("searcher", SEARCHER, "Finds facts."),
                agent("fact_checker", FACT_CHECKER, "Checks facts."),
            ],
            "Finds and checks facts.",
            history,
            checkpoints,
        )
        writing = team(
            "writing_team",
            agent("writing_lead", WRITING_LEAD),
            [
                agent("writer", WRITER, "Drafts text."),
                agent("editor", EDITOR, "Edits drafts."),
            ],
            "Writes and edits text for readers.",
            history,
            checkpoints,
        )
        chief = agent("chief", CHIEF)
        newsroom = (
            HandoffBuilder("newsroom", [chief, research, writing], history=history)
            .with_supervisor(chief)
            .add_handoff(chief, END)
            .with_checkpointing(checkpoints)
            .build()
        )
        print(f"user: {REQUEST}")
        async for event in newsroom.run(REQUEST, session="note-1"):
            events.append(event)
            show(event)
        print("--- stored: the chief's conversation, and one sub-session per team ---")
        for message in await history.list_messages("note-1"):
            sub_session = message.metadata.get(SUB_SESSION_KEY)
            if isinstance(sub_session, str):
                count = len(await history.list_messages(sub_session))
                print(f"{message.name}'s answer links {sub_session!r} ({count} messages)")
    return events


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def said(messages: list[ChatMessage], name: str) -> str:
    """The newest text `name` wrote in `messages`."""
    return next(m.text for m in reversed(messages) if m.name == name and m.text)


def team_task(messages: list[ChatMessage]) -> str:
    """The task a team was given: the first user message of its sub-session."""
    return next(m.text for m in messages if m.role == "user")


Step = tuple[str, Callable[[list[ChatMessage]], str]]

# Each lead's steps, in order: a handoff with its task, then `end_run` with its answer.
PLANS: dict[str, list[Step]] = {
    CHIEF: [
        (
            "handoff_to_research_team",
            lambda m: "When did the Great Lisbon earthquake strike, and what did it change?",
        ),
        (
            "handoff_to_writing_team",
            lambda m: f"Two sentences for readers from these facts: {said(m, 'research_team')}",
        ),
        ("end_run", lambda m: said(m, "writing_team")),
    ],
    RESEARCH_LEAD: [
        ("handoff_to_searcher", team_task),
        ("handoff_to_fact_checker", lambda m: f"Check: {said(m, 'searcher')}"),
        ("end_run", lambda m: said(m, "searcher")),
    ],
    WRITING_LEAD: [
        ("handoff_to_writer", team_task),
        ("handoff_to_editor", lambda m: f"Tighten: {said(m, 'writer')}"),
        ("end_run", lambda m: said(m, "editor")),
    ],
}

ANSWERS = {
    SEARCHER: (
        "It struck on 1 November 1755 and destroyed most of Lisbon. The city was rebuilt in "
        "the Pombaline style, with some of the first earthquake-resistant buildings in Europe."
    ),
    FACT_CHECKER: "Both facts hold.",
    WRITER: (
        "On 1 November 1755 an earthquake destroyed most of Lisbon. When the city was rebuilt, "
        "it got some of the first earthquake-resistant buildings in Europe."
    ),
    EDITOR: (
        "On 1 November 1755, an earthquake destroyed most of Lisbon. Rebuilt, the city got "
        "some of Europe's first earthquake-resistant buildings."
    ),
}


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system = messages[0].text
    if system in ANSWERS:
        return ANSWERS[system]
    done = sum(1 for m in messages if m.role == "assistant" and m.tool_calls)
    tool_name, write = PLANS[system][done]
    argument = "answer" if tool_name == "end_run" else "task"
    arguments = json.dumps({argument: write(messages)})
    call = ToolCall(id=f"call_{len(messages)}", name=tool_name, arguments=arguments)
    return ChatMessage.assistant(tool_calls=[call])


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
        asyncio.run(amain(client, db_path=args.db or os.path.join(folder, "newsroom.db")))


if __name__ == "__main__":
    main()
