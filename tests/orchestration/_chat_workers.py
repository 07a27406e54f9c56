"""Sequential chats with a human in the loop, one call per OS process:
`python -m tests.orchestration._chat_workers <history url> <prefix> <session> <responses>`.

Each call runs the same two chats (the first asks the human in "TERMINATE" mode) with the
answers given as JSON, then prints a JSON report on stdout: each chat's result, and how many
requests each model received in this process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from memweave.messages import ChatMessage
from memweave.orchestration import Agent, ChatSpec, checkpoint_store_from_url, initiate_chats
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient


def calc_model(messages: list[ChatMessage], tools: Any, options: Any) -> str:
    return "30. TERMINATE" if "Also add 5." in messages[-1].text else "Sum: 25. TERMINATE"


def analyst_model(messages: list[ChatMessage], tools: Any, options: Any) -> str:
    return "A big number. TERMINATE" if "30." in messages[-1].text else "Which number?"


def chats(session: str) -> tuple[list[ChatSpec], dict[str, ScriptedChatClient]]:
    """The two chats and their models: the calculator's chat asks the human on TERMINATE."""
    clients = {
        "user": ScriptedChatClient([]),
        "calc": ScriptedChatClient(calc_model),
        "analyst": ScriptedChatClient(analyst_model),
    }
    calc = Agent("calc", clients["calc"])
    analyst = Agent("analyst", clients["analyst"])
    specs = [
        ChatSpec(calc, "Sum 14, 3, 8.", session_id=f"{session}-0", human_input_mode="TERMINATE"),
        ChatSpec(analyst, "Comment on the result.", session_id=f"{session}-1"),
    ]
    return specs, clients


async def main(url: str, prefix: str, session: str, responses: dict[str, str]) -> None:
    options = {"namespace": prefix} if url.startswith("redis") else {}
    specs, clients = chats(session)
    user = Agent("user", clients["user"])
    async with (
        from_url(url, **options) as history,
        checkpoint_store_from_url(url, **options) as checkpoints,
    ):
        results = await initiate_chats(
            user, specs, history=history, checkpoints=checkpoints, responses=responses
        )
    report = {
        "results": [
            {
                "request_id": r.request.request_id if r.request is not None else None,
                "summary": r.summary,
                "carryover": list(r.carryover),
                "history": [[m.name, m.text] for m in r.chat_history],
            }
            for r in results
        ],
        "calls": {name: len(client.requests) for name, client in clients.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
