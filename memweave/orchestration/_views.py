"""Per-agent views of one shared conversation, and the metadata that makes them possible.

Orchestrators store each conversation once. Every message an agent writes is tagged with the
agent's name (`AGENT_KEY` in its metadata, and `name` on assistant messages); a view shows an
agent all user and agent text, but only its own tool calls and tool results.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Literal

from memweave.messages import ChatMessage

__all__ = ["AGENT_KEY", "HANDOFF_KEY", "agent_of", "agent_view", "own_calls", "tag_messages"]

AGENT_KEY = "memweave.agent"
"""Metadata key holding the name of the agent that wrote a message."""

HANDOFF_KEY = "memweave.handoff"
"""Metadata key marking a handoff note: `{"source", "target", "reason", "task"}`."""


def agent_of(message: ChatMessage) -> str | None:
    """Return the agent that wrote `message`, or None for user input and untagged messages."""
    value = message.metadata.get(AGENT_KEY)
    return value if isinstance(value, str) else None


def tag_messages(messages: Iterable[ChatMessage], agent: str) -> list[ChatMessage]:
    """Return copies of `messages` marked as written by `agent` (same ids)."""
    out = []
    for message in messages:
        update: dict[str, object] = {"metadata": {**message.metadata, AGENT_KEY: agent}}
        if message.role == "assistant":
            update["name"] = agent
        out.append(message.model_copy(update=update))
    return out


def own_calls(conversation: Iterable[ChatMessage], agent: str) -> set[str]:
    """Return the ids of the tool calls `agent` made in `conversation`."""
    return {
        call.id
        for message in conversation
        if message.role == "assistant" and agent_of(message) == agent
        for call in message.tool_calls
    }


def agent_view(
    conversation: Sequence[ChatMessage],
    agent: str,
    *,
    others_as: Literal["assistant", "user"] = "assistant",
    own: Collection[str] | None = None,
) -> list[ChatMessage]:
    """Return what `agent` sees of a shared conversation.

    User messages and system messages are kept. The agent's own messages are kept whole,
    tool calls and results included. Another agent's assistant message shows only its text
    (as an assistant or a user message, per `others_as`, with the author as `name`), or
    nothing when it has no text; other agents' tool results are left out. A handoff note is
    shown only to the agent it hands over to.

    `own` gives the agent's tool call ids when `conversation` is only part of a longer one
    (see `own_calls`); by default they are read from `conversation`.
    """
    if own is None:
        own = own_calls(conversation, agent)
    view: list[ChatMessage] = []
    for message in conversation:
        author = agent_of(message)
        if message.role == "tool":
            if message.tool_call_id in own:
                view.append(message)
        elif message.role == "system":
            note = message.metadata.get(HANDOFF_KEY)
            if not isinstance(note, dict) or note.get("target") == agent:
                view.append(message)
        elif message.role == "user" or author == agent or author is None:
            if message.role == "assistant" and author is None and message.tool_calls:
                # An untagged call has no owner here, and its results are hidden with it.
                if message.text:
                    view.append(message.model_copy(update={"tool_calls": ()}))
                continue
            view.append(message)
        elif message.text:
            if others_as == "user":
                view.append(ChatMessage.user(message.content, name=author, id=message.id))
            else:
                view.append(ChatMessage.assistant(message.content, name=author, id=message.id))
    return view
