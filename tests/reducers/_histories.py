"""Builders and a hypothesis strategy for chat histories, plus the reducer invariants."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from memweave.messages import ChatMessage, ToolCall

_ids = itertools.count()

WORDS: tuple[str, ...] = (
    "the",
    "deploy",
    "failed",
    "because",
    "cache",
    "was",
    "cold",
    "Monday",
    "please",
)
WORDS += ("check", "invoice", "numbers", "before", "we", "send", "them", "to", "Lisbon", "ünïcode")


def user(text: str = "hello there") -> ChatMessage:
    """A user message."""
    return ChatMessage.user(text)


def assistant(text: str = "hi, how can I help?") -> ChatMessage:
    """A plain assistant message."""
    return ChatMessage.assistant(text)


def system(text: str = "You are terse.") -> ChatMessage:
    """A system message."""
    return ChatMessage.system(text)


def tool_group(
    calls: int = 2, *, results: int | None = None, text: str = "ok"
) -> list[ChatMessage]:
    """An assistant message with `calls` parallel tool calls and `results` of their results."""
    ids = [f"call_{next(_ids)}" for _ in range(calls)]
    head = ChatMessage.assistant(
        tool_calls=[ToolCall(id=call_id, name="lookup", arguments='{"q": 1}') for call_id in ids]
    )
    answered = ids if results is None else ids[:results]
    return [head, *(ChatMessage.tool(call_id, text) for call_id in answered)]


@st.composite
def histories(draw: st.DrawFn, *, max_groups: int = 30) -> list[ChatMessage]:
    """Valid histories: users, assistants, systems anywhere (also inside a tool group), and
    tool-call groups with 1-3 parallel calls; the last group may still await results."""
    text = st.lists(st.sampled_from(WORDS), max_size=25).map(" ".join)
    kinds = st.sampled_from(["user", "user", "assistant", "assistant", "tools", "system"])
    out: list[ChatMessage] = []
    for kind in draw(st.lists(kinds, max_size=max_groups)):
        if kind == "user":
            out.append(ChatMessage.user(draw(text) or "hi", name=draw(st.none() | st.just("ada"))))
        elif kind == "assistant":
            out.append(ChatMessage.assistant(draw(text) or "ok"))
        elif kind == "system":
            out.append(ChatMessage.system(draw(text) or "be brief"))
        else:
            group = tool_group(draw(st.integers(1, 3)), text=draw(text))
            if draw(st.integers(0, 3)) == 0:
                group.insert(draw(st.integers(1, len(group))), ChatMessage.system("note"))
            out.extend(group)
    if out and draw(st.integers(0, 7)) == 0:
        out.extend(tool_group(draw(st.integers(1, 3)), results=draw(st.integers(0, 1))))
    return out


def split_rest(
    history: Sequence[ChatMessage], keep_system: bool
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """(system messages kept, the other messages), each oldest first."""
    if not keep_system:
        return [], list(history)
    systems = [m for m in history if m.role == "system"]
    return systems, [m for m in history if m.role != "system"]


def _callers(messages: Sequence[ChatMessage]) -> dict[str, int]:
    return {call.id: i for i, m in enumerate(messages) for call in m.tool_calls}


def group_start(rest: Sequence[ChatMessage], end: int) -> int:
    """Index where the smallest closed group ending at `rest[end]` starts."""
    callers = _callers(rest)
    start = end
    changed = True
    while changed:
        changed = False
        for m in rest[start : end + 1]:
            if m.role == "tool" and callers.get(m.tool_call_id or "", start) < start:
                start = callers[m.tool_call_id or ""]
                changed = True
    return start


def check_window(
    history: Sequence[ChatMessage],
    result: Sequence[ChatMessage],
    *,
    keep_system: bool,
    start_on_user: bool,
    cost: Callable[[Sequence[ChatMessage]], int],
    budget: int,
) -> None:
    """Assert every reducer invariant of the issue on one reduction."""
    systems, rest = split_rest(history, keep_system)
    # The kept system messages, then a contiguous newest part of the rest (same objects).
    assert len(result) >= len(systems)
    assert all(a is b for a, b in zip(result[: len(systems)], systems, strict=True))
    body = list(result[len(systems) :])
    assert len(body) <= len(rest)
    assert all(a is b for a, b in zip(body, rest[len(rest) - len(body) :], strict=True))
    if rest:
        assert body, "the newest group is always kept"
    # A tool call and all its results are kept or dropped together.
    kept = {m.id for m in body}
    callers = _callers(history)
    for m in history:
        if m.role == "tool" and m.tool_call_id in callers:
            caller = history[callers[m.tool_call_id]]
            assert (m.id in kept) == (caller.id in kept), "tool result split from its call"
    # With start_on_user, the kept part starts on a user message when it holds one.
    if start_on_user and any(m.role == "user" for m in body):
        assert body[0].role == "user"
    # The budget holds, unless the result is the newest complete group alone.
    if cost(result) > budget:
        newest = rest[group_start(rest, len(rest) - 1) :]
        assert [m.id for m in body] == [m.id for m in newest]
    # The window is as large as it may be: the group before it would not fit.
    if not start_on_user and len(body) < len(rest):
        before_end = len(rest) - len(body) - 1
        previous = rest[group_start(rest, before_end) : before_end + 1]
        assert cost([*systems, *previous, *body]) > budget
