"""Reducer modes: `reduce_on="read"` returns a reduced view and leaves storage as it is;
`"write"` stores the reduced history, and a pure truncation keeps the kept messages as they were."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from memweave import ChatMessage, ChatReducer
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts


class KeepLast(ChatReducer):
    """Keeps system messages and the newest `n` others (a pure truncation)."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        system = [m for m in messages if m.role == "system"]
        rest = [m for m in messages if m.role != "system"]
        return system + rest[-self.n :]

    async def reduce_tail(
        self, system: Sequence[ChatMessage], tail: Sequence[ChatMessage]
    ) -> list[ChatMessage] | None:
        rest = [m for m in tail if m.role != "system"]
        if len(rest) < self.n:
            return None
        return [*system, *(m for m in tail if m.role == "system"), *rest[-self.n :]]


class FoldOlder(ChatReducer):
    """Replaces all but the newest `n` messages with one summary message (not a truncation)."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if len(messages) <= self.n:
            return list(messages)
        older, newer = messages[: -self.n], messages[-self.n :]
        summary = ChatMessage.system(
            "summary of " + ", ".join(m.text for m in older), id="summary-" + older[-1].id
        )
        return [summary, *newer]


async def test_reduce_on_read_returns_view_and_keeps_storage(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`reduce_on="read"` returns the reduced view; storage keeps every message."""
    history = make_history(reducer=KeepLast(3), reduce_on="read")
    messages = [ChatMessage.system("rules"), *make_messages(8)]
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id)) == ["rules", *texts(messages[-3:])]
    assert await history.count_messages(session_id) == 9


async def test_reduce_on_read_limit_applies_to_view(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`limit` takes the newest messages of the reduced view."""
    history = make_history(reducer=KeepLast(4), reduce_on="read")
    messages = make_messages(10)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id, limit=2)) == texts(messages[-2:])


async def test_reduce_on_read_of_long_session_keeps_old_system_messages(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A reduced read of a long session equals reducing the whole history, system messages
    far from the end included."""
    history = make_history(reducer=KeepLast(5), reduce_on="read")
    messages = [ChatMessage.system("rules"), *make_messages(150, text="a")]
    messages += [ChatMessage.system("more rules"), *make_messages(400, text="b")]
    await history.add_messages(session_id, messages)
    expected = await KeepLast(5).reduce(messages)
    assert await history.list_messages(session_id) == expected


async def test_reduce_on_write_truncates_storage(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`reduce_on="write"` stores the reduced history after each add, kept messages unchanged."""
    history = make_history(reducer=KeepLast(3), reduce_on="write")
    messages = [ChatMessage.system("rules"), *make_messages(6)]
    for message in messages:
        await history.add_messages(session_id, [message])
    stored = await history.list_messages(session_id)
    assert stored == [messages[0], *messages[-3:]]
    assert await history.count_messages(session_id) == 4


async def test_reduce_on_write_replaces_with_summary(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A reducer that rewrites the history has its result stored as the new history."""
    history = make_history(reducer=FoldOlder(2), reduce_on="write")
    messages = make_messages(5)
    await history.add_messages(session_id, messages)
    stored = await history.list_messages(session_id)
    assert [m.role for m in stored] == ["system", messages[-2].role, messages[-1].role]
    assert stored[0].text == "summary of message 0, message 1, message 2"
    assert stored[1:] == messages[-2:]
    await history.add_messages(session_id, make_messages(1, text="more"))
    assert await history.count_messages(session_id) == 3
