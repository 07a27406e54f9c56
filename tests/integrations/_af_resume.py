"""Continue an Agent Framework conversation in a fresh process, from its stored session.

Run as `python -m tests.integrations._af_resume '<json>'` with `url` (the memweave backend),
`session_file` (an `AgentSession.to_dict()` JSON file, rewritten after the turn),
`memory_path` (a `VectorMemory` folder), `replies` and `input`. Prints a JSON object with
the messages the model was sent, as `[role, text]` pairs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent_framework import AgentSession

from memweave.context import VectorMemory
from memweave.integrations.agent_framework import MemweaveContextProvider, MemweaveHistoryProvider
from memweave.providers import from_url
from tests.integrations._af_support import ScriptedAFChatClient, make_agent
from tests.integrations._support import HashedWordEmbeddings


async def run_turn(args: dict[str, Any], session: AgentSession) -> dict[str, Any]:
    """Run one turn of `session` on the stored history and memory; return what was sent."""
    client = ScriptedAFChatClient(args["replies"])
    async with (
        from_url(args["url"]) as history,
        VectorMemory(args["memory_path"], embedder=HashedWordEmbeddings()) as memory,
    ):
        agent = make_agent(
            client, [MemweaveHistoryProvider(history), MemweaveContextProvider(memory)]
        )
        await agent.run(args["input"], session=session)
    [request] = client.scripted.requests
    return {"sent": [[message.role, message.text] for message in request.messages]}


def main() -> None:
    """Load the session, run the turn, store the session and print the result."""
    args = json.loads(sys.argv[1])
    session_file = Path(args["session_file"])
    session = AgentSession.from_dict(json.loads(session_file.read_text()))
    result = asyncio.run(run_turn(args, session))
    session_file.write_text(json.dumps(session.to_dict()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
