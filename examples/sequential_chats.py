"""Sequential chats with carryover: a number processor, then a result analyzer.

The AutoGen "sequential chats" scenario on memweave: a user proxy first asks the number
processor to process a list of numbers (with a tool), then asks the result analyzer to analyze
the result. The analyzer's first message carries the first chat's summary, plus an explicit
note, in a marked context block. Both transcripts are stored in one SQLite file, each under
its own session id.

Run it against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/sequential_chats.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.orchestration import Agent, ChatResult, ChatSpec, initiate_chats, tool
from memweave.providers import from_url

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


async def amain(client: ChatClient, *, db_path: str = "sequential_example.db") -> list[ChatResult]:
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
                ChatSpec(
                    recipient=analyzer,
                    message="Analyze the processed numbers. What stands out?",
                    max_turns=1,
                    carryover="The numbers are this week's daily sign-ups.",
                    summary_method="reflection_with_llm",
                ),
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


def main() -> None:
    """Run the example against the server the environment names."""
    asyncio.run(amain(make_client()))


if __name__ == "__main__":
    main()
