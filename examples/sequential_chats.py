"""Sequential chats with carryover: a number processor, then a result analyzer.

The AutoGen "sequential chats" scenario on memweave: a user proxy first asks the number
processor to process a list of numbers (with a tool), then asks the result analyzer to analyze
the result. The analyzer's first message carries the first chat's summary, plus an explicit
note, in a marked context block. Both transcripts are stored in one SQLite file, each under
its own session id. The second chat is written as an AutoGen-style dict.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/sequential_chats.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/sequential_chats.py
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
from memweave.orchestration import Agent, ChatResult, ChatSpec, initiate_chats, tool
from memweave.orchestration.sequential import DEFAULT_SUMMARY_PROMPT
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

NUMBERS = [14, 3, 8, 21]

USER_PROXY = "You are the user proxy. You hand out tasks and reply briefly; you never compute."
PROCESSOR = (
    "You are the number processor. Call the process_numbers tool on the numbers you are "
    "given, report its result in one or two sentences, and end your message with TERMINATE."
)
ANALYZER = (
    "You are the result analyzer. Using the context you are given, say what stands out in "
    "the processed numbers in at most three sentences, and end your message with TERMINATE."
)


@tool
def process_numbers(numbers: Annotated[list[int], "The numbers to process"]) -> dict[str, Any]:
    """Double every number and report the doubled list, its sum and its mean."""
    doubled = [2 * n for n in numbers]
    return {"doubled": doubled, "sum": sum(doubled), "mean": sum(doubled) / len(doubled)}


def build_agents(client: ChatClient) -> tuple[Agent, Agent, Agent]:
    """Return the user proxy, the number processor and the result analyzer."""
    user = Agent("user_proxy", client, instructions=USER_PROXY)
    processor = Agent("number_processor", client, instructions=PROCESSOR, tools=[process_numbers])
    analyzer = Agent("result_analyzer", client, instructions=ANALYZER)
    return user, processor, analyzer


async def amain(client: ChatClient, *, db_path: str) -> list[ChatResult]:
    """Run both chats on `client` and print each chat's summary and carryover."""
    user, processor, analyzer = build_agents(client)
    async with from_url(f"sqlite+aiosqlite:///{db_path}") as history:
        results = await initiate_chats(
            user,
            [
                ChatSpec(
                    recipient=processor,
                    message=f"Process these numbers: {NUMBERS}",
                    max_turns=2,
                    summary_method="last_msg",
                ),
                {
                    "recipient": analyzer,
                    "message": "Analyze the processed numbers. What stands out?",
                    "max_turns": 1,
                    "carryover": "The numbers are this week's daily sign-ups.",
                    "summary_method": "reflection_with_llm",
                },
            ],
            history=history,
        )
    for index, result in enumerate(results, start=1):
        print(f"--- chat {index} (session {result.session_id}) ---")
        for message in result.chat_history:
            if message.text:
                print(f"{message.name or message.role}: {message.text}")
        print(f"carryover used: {list(result.carryover)}")
        print(f"summary: {result.summary}")
    return results


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system, last = messages[0].text, messages[-1]
    if system == PROCESSOR:
        if last.role == "tool":
            data = json.loads(last.text)
            return f"Doubled: {data['doubled']}, sum {data['sum']}. TERMINATE"
        call = ToolCall(
            id="call_1", name="process_numbers", arguments=json.dumps({"numbers": NUMBERS})
        )
        return ChatMessage.assistant(tool_calls=[call])
    if system == ANALYZER:
        return "Sign-ups doubled to 92 in total; day four stands out. TERMINATE"
    return "Day four stood out." if last.text == DEFAULT_SUMMARY_PROMPT else "Thanks."


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
        asyncio.run(amain(client, db_path=args.db or os.path.join(folder, "chats.db")))


if __name__ == "__main__":
    main()
