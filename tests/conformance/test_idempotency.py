"""Idempotency: re-adding a stored message id stores nothing; content never deduplicates."""

from __future__ import annotations

from collections.abc import Callable

from memweave import ChatMessage
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts


async def test_add_messages_is_idempotent_by_id(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Re-adding a message id already stored in the session stores nothing."""
    messages = make_messages(5)
    await history.add_messages(session_id, messages)
    await history.add_messages(session_id, messages)
    await history.add_messages(session_id, messages[2:4])
    assert texts(await history.list_messages(session_id)) == texts(messages)


async def test_add_messages_retry_with_new_tail_appends_only_new(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A retried batch that gained new messages appends just the new ones, in order."""
    messages = make_messages(6)
    await history.add_messages(session_id, messages[:3])
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id)) == texts(messages)


async def test_add_messages_duplicate_id_within_batch_stored_once(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A message id repeated inside one batch is stored once (the first occurrence)."""
    message = ChatMessage.user("once")
    await history.add_messages(session_id, [message, ChatMessage.user("between"), message])
    assert texts(await history.list_messages(session_id)) == ["once", "between"]


async def test_add_messages_never_deduplicates_by_content(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Verbatim-repeated turns with distinct ids are all kept."""
    repeated = [ChatMessage.user("yes") for _ in range(4)]
    await history.add_messages(session_id, repeated)
    await history.add_messages(session_id, [ChatMessage.user("yes")])
    assert texts(await history.list_messages(session_id)) == ["yes"] * 5


async def test_add_messages_same_id_in_two_sessions_stored_in_both(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """Idempotency is per session: one message id can be stored in two sessions."""
    first, second = new_session_id(""), new_session_id("")
    message = ChatMessage.user("shared")
    await history.add_messages(first, [message])
    await history.add_messages(second, [message])
    assert await history.list_messages(first) == [message]
    assert await history.list_messages(second) == [message]
