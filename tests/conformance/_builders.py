"""Builders with defaults for conformance tests."""

from __future__ import annotations

import uuid

from memweave import ChatMessage, ToolCall


def make_messages(n: int, *, text: str = "message") -> list[ChatMessage]:
    """`n` alternating user/assistant messages whose texts are `"{text} {i}"`."""
    return [
        ChatMessage.user(f"{text} {i}") if i % 2 == 0 else ChatMessage.assistant(f"{text} {i}")
        for i in range(n)
    ]


def tool_pair(calls: int = 1, *, name: str = "lookup") -> list[ChatMessage]:
    """An assistant message with `calls` parallel tool calls, followed by all their results."""
    ids = [f"call_{uuid.uuid4().hex[:12]}" for _ in range(calls)]
    return [
        ChatMessage.assistant(
            tool_calls=[ToolCall(id=i, name=name, arguments='{"q": 1}') for i in ids]
        ),
        *(ChatMessage.tool(i, f"result of {i}") for i in ids),
    ]


def texts(messages: list[ChatMessage]) -> list[str]:
    """The texts of `messages`, in order."""
    return [message.text for message in messages]
