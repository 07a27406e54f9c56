"""Atomic message groups, and the newest window of them that fits a budget.

A group is what a reducer keeps or drops whole: an assistant message with tool calls together
with the tool results that follow it, or any other single message. Tool results that follow
no assistant tool call form an orphan group, which a window never starts on.

The window is found by walking from the newest message backwards and stopping when the budget
is filled, so a turn costs the window, not the history. Only the search for system messages
looks at the whole history, and `SystemIndex` makes that incremental for appended histories.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from memweave.errors import InvalidMessage
from memweave.messages import ChatMessage

__all__ = ["SystemIndex", "Window", "as_message_list", "select_window"]


def as_message_list(messages: Sequence[ChatMessage] | Iterable[ChatMessage]) -> list[ChatMessage]:
    """Return `messages` as a list without copying a list; reject a lone message or a str."""
    if isinstance(messages, list):
        return messages
    if isinstance(messages, ChatMessage):
        raise InvalidMessage("expected a sequence of messages, got a single ChatMessage")
    if isinstance(messages, str | bytes | Mapping):
        raise InvalidMessage(f"expected a sequence of messages, got {type(messages).__name__}")
    return list(messages)


def _not_a_message(item: object, position: int) -> InvalidMessage:
    return InvalidMessage(f"expected a ChatMessage, got {type(item).__name__}", position=position)


class SystemIndex:
    """Positions of the system messages in the last history seen.

    When the next history starts with the same messages (an appended history, the usual case
    from one turn to the next), only the new messages are scanned. The check compares the
    cached copy with the new history by identity, at C speed, and never copies the whole
    history: copying touches every message object, which costs more than the comparison.
    """

    __slots__ = ("_lock", "_positions", "_seen")

    def __init__(self) -> None:
        self._seen: list[ChatMessage] = []
        self._positions: list[int] = []
        # The cached copy is extended in place, so one reducer shared by threads needs this.
        self._lock = threading.Lock()

    def positions(self, messages: list[ChatMessage]) -> tuple[int, ...]:
        """Return the indexes of the system messages in `messages`, oldest first."""
        with self._lock:
            seen = self._seen
            size = len(seen)
            if (
                size
                and len(messages) >= size
                and messages[size - 1] is seen[-1]
                and messages[0] is seen[0]
            ):
                seen.extend(messages[size:])
                if seen == messages:
                    self._scan(messages, size)
                    return tuple(self._positions)
                del seen[size:]
            self._seen = list(messages)
            self._positions = []
            self._scan(messages, 0)
            return tuple(self._positions)

    def _scan(self, messages: list[ChatMessage], start: int) -> None:
        found = self._positions
        for index in range(start, len(messages)):
            message = messages[index]
            if not isinstance(message, ChatMessage):
                del self._seen[:]
                raise _not_a_message(message, index)
            if message.role == "system":
                found.append(index)


@dataclass(slots=True)
class _Group:
    members: list[ChatMessage]
    """Newest first."""
    head_role: str
    orphan: bool
    """Tool results with no assistant call before them."""
    open: bool
    """An orphan that reaches the first message given: older messages may hold its call."""
    cost: int


@dataclass(frozen=True, slots=True)
class Window:
    """The outcome of `select_window`."""

    systems: list[ChatMessage]
    """The kept system messages, oldest first."""
    body: list[ChatMessage]
    """The kept newest part of the other messages, oldest first."""
    cost: int
    """The summed cost of `systems` and `body`."""
    over_budget: bool
    """True when the newest group alone (with the system messages) exceeded the budget."""
    final: bool
    """True when the walk stopped at a group that did not fit, before the oldest message:
    messages older than those given could not change the window."""

    @property
    def messages(self) -> list[ChatMessage]:
        """`systems` followed by `body`."""
        return self.systems + self.body


def _group_ending_at(
    messages: list[ChatMessage], end: int, keep_system: bool
) -> tuple[list[ChatMessage], str, bool, bool, int]:
    """Return (members newest first, head role, orphan, open, index before the group)."""
    members: list[ChatMessage] = []
    index = end
    while index >= 0:
        message = messages[index]
        if not isinstance(message, ChatMessage):
            raise _not_a_message(message, index)
        if message.role == "tool":
            members.append(message)
        elif not (keep_system and message.role == "system"):
            break
        index -= 1
    if not members:
        if index < 0:
            return members, "", False, False, -1
        return [messages[index]], messages[index].role, False, False, index - 1
    # Tool results belong to the assistant call before them, even across system messages.
    head = index
    while head >= 0:
        candidate = messages[head]
        if not (isinstance(candidate, ChatMessage) and candidate.role in ("system", "tool")):
            break
        head -= 1
    caller = messages[head] if head >= 0 else None
    if not (isinstance(caller, ChatMessage) and caller.role == "assistant" and caller.tool_calls):
        return members, "tool", True, head < 0, index
    members = [
        message
        for message in reversed(messages[head : end + 1])
        if not (keep_system and message.role == "system")
    ]
    return members, "assistant", False, False, head - 1


def select_window(
    messages: list[ChatMessage],
    *,
    budget: int,
    cost: Callable[[ChatMessage], int],
    keep_system: bool,
    start_on_user: bool,
    system_index: SystemIndex | None = None,
    older_systems: Sequence[ChatMessage] = (),
) -> Window:
    """Choose the system messages and the newest whole groups whose summed cost fits `budget`.

    The newest group is always kept, even alone over the budget (`over_budget` says so). With
    `start_on_user`, the body starts on its oldest user message when it holds one. A body
    never starts on an orphan tool result unless that is all it holds.

    Args:
        messages: The history, oldest first; not modified.
        budget: The most the kept messages may cost together.
        cost: The cost of one message.
        keep_system: Keep every system message, placed first, and leave them out of the body.
        start_on_user: Drop the body's oldest groups until it starts on a user message.
        system_index: A cache for finding system messages; a fresh one is used when `None`.
        older_systems: With `keep_system`, system messages older than `messages` (when
            `messages` is only the tail of a history); they are kept first.
    """
    systems: list[ChatMessage] = []
    if keep_system:
        index = system_index if system_index is not None else SystemIndex()
        for position, message in enumerate(older_systems):
            if not isinstance(message, ChatMessage):
                raise _not_a_message(message, position)
        systems = [*older_systems, *(messages[i] for i in index.positions(messages))]
    used = 0
    for message in systems:
        used += cost(message)
    groups: list[_Group] = []
    over_budget = False
    final = False
    end = len(messages) - 1
    while end >= 0:
        members, head_role, orphan, is_open, end = _group_ending_at(messages, end, keep_system)
        if not members:
            break
        group_cost = 0
        for message in members:
            group_cost += cost(message)
        if used + group_cost > budget:
            if groups:
                # An older part of this group, beyond `messages`, could only cost more; but a
                # kept group whose call may lie beyond `messages` leaves the answer open.
                final = not any(group.open for group in groups)
                break
            over_budget = True
        used += group_cost
        groups.append(_Group(members, head_role, orphan, is_open, group_cost))
    first = len(groups) - 1
    if start_on_user:
        for position in range(first, -1, -1):
            if groups[position].head_role == "user":
                first = position
                break
    while first > 0 and groups[first].orphan:
        first -= 1
    body: list[ChatMessage] = []
    for position in range(len(groups) - 1, -1, -1):
        if position > first:
            used -= groups[position].cost
        else:
            body.extend(reversed(groups[position].members))
    return Window(systems=systems, body=body, cost=used, over_budget=over_budget, final=final)
