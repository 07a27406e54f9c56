"""The one seeded workload generator every benchmark shares: realistic chat histories.

`make_conversation(n)` returns `n` messages: a system prompt, then user and assistant turns
of 20 to 400 words each, and, in about `tool_share` of the message groups, an assistant
message with 1 to 3 parallel tool calls followed by their results. Everything (texts, ids,
timestamps) follows from the seed, and 10,000 messages take a fraction of a second.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage, ToolCall

__all__ = ["make_conversation"]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

_SUBJECTS = (
    "the deployment", "our quarterly report", "the new onboarding flow", "the database migration",
    "the customer in Lisbon", "the API gateway", "my flight to Osaka", "the marketing budget",
    "the test suite", "the invoice from March", "the recipe for the dinner party",
    "the hiring plan", "the cache layer", "the contract renewal", "the mobile release",
    "the support backlog", "the training run", "the office move", "the pricing page",
    "the security review",
)  # fmt: skip
_VERBS = (
    "needs", "should include", "could reuse", "depends on", "is blocked by", "will replace",
    "keeps failing on", "was approved with", "still mentions", "has to cover", "runs faster with",
    "was delayed by", "looks cleaner without", "conflicts with", "was estimated at",
)  # fmt: skip
_OBJECTS = (
    "a rollback plan", "three more reviewers", "the latest figures", "a clearer error message",
    "the staging environment", "about twelve percent of the traffic", "the legal team's notes",
    "a second data center", "the vegetarian option", "two extra sprints", "the old schema",
    "a smaller batch size", "the signed purchase order", "better retry logic",
    "a fallback for offline users", "the window seat", "a weekly summary", "the audit trail",
    "a shorter timeout", "the design tokens",
)  # fmt: skip
_OPENERS = (
    "Honestly,", "As far as I can tell,", "Quick note:", "To be fair,", "In short,",
    "From what I saw yesterday,", "If I remember correctly,", "Before Friday,", "Overall,",
    "On the other hand,", "For what it is worth,", "Right now,",
)  # fmt: skip
_TAILS = (
    "so we should double-check it.", "and nobody has complained yet.", "which surprised me.",
    "but only in production.", "according to the last meeting.", "if the numbers hold up.",
    "once the vendor replies.", "for the next two weeks.", "which is fine for now.",
    "and that worries me a little.", "unless someone objects.", "as agreed on Monday.",
)  # fmt: skip
_QUESTIONS = (
    "Can you check whether {s} {v} {o}?", "What would it take for {s} to ship with {o}?",
    "Do you think {s} {v} {o}?", "Could you summarize why {s} {v} {o}?",
    "How should we explain to the team that {s} {v} {o}?",
)  # fmt: skip
_TOOLS = (
    ("search_web", "query"), ("get_weather", "city"), ("run_sql", "statement"),
    ("read_file", "path"), ("calendar_lookup", "date"), ("get_stock_price", "ticker"),
)  # fmt: skip
_SYSTEM = (
    "You are a careful, friendly assistant for a small product team. Answer in plain English, "
    "cite the tools you used, say when you are unsure, and keep answers focused on what the "
    "user asked. Use the available tools to look things up instead of guessing."
)


def _sentence(rng: random.Random) -> str:
    subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(_QUESTIONS).format(s=subject, v=verb, o=obj)
    text = f"{subject} {verb} {obj} {rng.choice(_TAILS)}"
    if roll < 0.5:
        return f"{rng.choice(_OPENERS)} {text}"
    return text[0].upper() + text[1:]


def _text(rng: random.Random, low: int, high: int) -> str:
    """A paragraph of `low` to `high` words (both within 20-400), cut at a word boundary."""
    target = rng.randint(low, high)
    words: list[str] = []
    while len(words) < target:
        words.extend(_sentence(rng).split())
    del words[target:]
    text = " ".join(words)
    return text if text.endswith((".", "?")) else text + "."


def _stamp(seed: int, index: int) -> dict[str, Any]:
    return {"id": f"s{seed}-{index}", "created_at": _EPOCH + timedelta(seconds=index)}


def _tool_group(rng: random.Random, seed: int, index: int, calls: int) -> list[ChatMessage]:
    chosen = [rng.choice(_TOOLS) for _ in range(calls)]
    tool_calls = tuple(
        ToolCall(
            id=f"call_{seed}_{index}_{k}",
            name=name,
            arguments=json.dumps({arg: " ".join(_sentence(rng).split()[:6])}),
        )
        for k, (name, arg) in enumerate(chosen)
    )
    lead = _text(rng, 20, 40) if rng.random() < 0.3 else ""
    messages = [ChatMessage.assistant(lead, tool_calls=tool_calls, **_stamp(seed, index))]
    for call in tool_calls:
        result = json.dumps({"tool": call.name, "ok": True, "result": _text(rng, 20, 200)})
        messages.append(ChatMessage.tool(call.id, result, **_stamp(seed, index + len(messages))))
    return messages


def make_conversation(n: int, *, seed: int = 0, tool_share: float = 0.1) -> list[ChatMessage]:
    """Return a realistic, valid chat history of exactly `n` messages, oldest first.

    The history opens with a system prompt; user messages hold 20-120 words and assistant
    replies 40-400. About `tool_share` of the message groups are tool-call groups: an
    assistant message with 1-3 parallel calls, then one result per call (20-200 words of
    JSON). A group that would not fit in `n` is replaced by a plain message, so every call
    has its results. Ids are `"s{seed}-{index}"` and timestamps one second apart from
    2024-01-01 UTC, so the same arguments always give equal histories.

    Args:
        n: How many messages to make.
        seed: The random seed.
        tool_share: The share of message groups that are tool-call groups, in [0, 1).

    Raises:
        InvalidArgument: `n` is negative or `tool_share` is outside [0, 1).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidArgument("n", n, "must be an int >= 0")
    if not isinstance(tool_share, int | float) or not 0 <= tool_share < 1:
        raise InvalidArgument("tool_share", tool_share, "must be a number in [0, 1)")
    rng = random.Random(seed)
    # After a user turn or a tool group, another tool group follows with this probability;
    # in the resulting chain of groups a share `tool_share` of them are tool groups.
    tool_chance = 2 * tool_share / (1 + tool_share)
    history: list[ChatMessage] = [ChatMessage.system(_SYSTEM, **_stamp(seed, 0))] if n else []
    last = "assistant"
    while len(history) < n:
        index = len(history)
        if last == "assistant":
            history.append(ChatMessage.user(_text(rng, 20, 120), **_stamp(seed, index)))
            last = "user"
            continue
        calls = rng.randint(1, 3)
        if rng.random() < tool_chance and calls + 1 <= n - index:
            history.extend(_tool_group(rng, seed, index, calls))
            last = "tool"
        else:
            history.append(ChatMessage.assistant(_text(rng, 40, 400), **_stamp(seed, index)))
            last = "assistant"
    return history
