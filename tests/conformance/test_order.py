"""Order: append order is kept, and `limit=N` returns the newest N in chronological order."""

from __future__ import annotations

from memweave import ChatMessage
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts


async def test_list_messages_keeps_append_order(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Order is append order, across batches."""
    first, second = make_messages(5, text="a"), make_messages(5, text="b")
    await history.add_messages(session_id, first)
    await history.add_messages(session_id, second)
    assert texts(await history.list_messages(session_id)) == texts(first + second)


async def test_list_messages_limit_returns_newest_in_order(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`limit=N` returns the newest N messages, oldest first."""
    messages = make_messages(30)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id, limit=7)) == texts(messages[-7:])


async def test_list_messages_limit_larger_than_history(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A limit above the history length returns the whole history."""
    messages = make_messages(3)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id, limit=100)) == texts(messages)


async def test_list_messages_limit_zero_is_empty(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`limit=0` returns no messages."""
    await history.add_messages(session_id, make_messages(3))
    assert await history.list_messages(session_id, limit=0) == []


async def test_list_messages_unknown_session_is_empty(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """An unknown session reads as empty and counts zero."""
    assert await history.list_messages(session_id) == []
    assert await history.count_messages(session_id) == 0


async def test_messages_round_trip_every_field(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A stored message reads back equal in every field, metadata and timestamps included."""
    message = ChatMessage.user(
        [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:x"}}],
        name="ada",
        metadata={"k": [1, 2.5, None, {"nested": True}], "unicode": "한국어 😀"},
    )
    await history.add_messages(session_id, [message])
    assert await history.list_messages(session_id) == [message]


async def test_count_messages_counts_stored(history: ChatHistoryProvider, session_id: str) -> None:
    """`count_messages` equals the number of stored messages."""
    await history.add_messages(session_id, make_messages(12))
    assert await history.count_messages(session_id) == 12


async def test_add_messages_stores_large_and_unicode_text(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """1 MB messages, emoji and Korean text are stored byte for byte."""
    big = "x" * (1024 * 1024)
    messages = [
        ChatMessage.user(big),
        ChatMessage.assistant("안녕하세요, 세계! 😀🎉 ñ \u200b zero-width"),
        ChatMessage.user("quotes ' \" \\ and NUL-free control-free text"),
    ]
    await history.add_messages(session_id, messages)
    assert await history.list_messages(session_id) == messages
