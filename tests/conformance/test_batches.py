"""Batches: `add_messages` is all-or-nothing."""

from __future__ import annotations

from typing import Any

import pytest

from memweave import ChatMessage, InvalidMessage
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts


async def test_add_messages_invalid_item_stores_nothing(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A batch with one invalid item stores nothing, and the error names its position."""
    await history.add_messages(session_id, make_messages(2, text="before"))
    batch: list[Any] = [*make_messages(3, text="batch"), {"role": "user", "content": "dict"}]
    with pytest.raises(InvalidMessage) as info:
        await history.add_messages(session_id, batch)
    assert info.value.position == 3
    assert texts(await history.list_messages(session_id)) == ["before 0", "before 1"]


async def test_add_messages_rejects_a_single_message(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """Passing one message instead of a sequence is an error, not a silent iteration."""
    with pytest.raises(InvalidMessage):
        await history.add_messages(session_id, ChatMessage.user("hi"))  # type: ignore[arg-type]
    assert await history.count_messages(session_id) == 0


async def test_add_messages_empty_batch_stores_nothing(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """An empty batch is a no-op."""
    await history.add_messages(session_id, [])
    assert await history.count_messages(session_id) == 0
    assert session_id not in await history.list_sessions()


async def test_add_messages_accepts_any_iterable(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A generator of messages is stored like a list."""
    await history.add_messages(session_id, (m for m in make_messages(4)))
    assert await history.count_messages(session_id) == 4


async def test_list_messages_negative_limit_is_rejected(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A negative limit raises a typed error naming the argument."""
    from memweave import InvalidArgument

    with pytest.raises(InvalidArgument, match="limit"):
        await history.list_messages(session_id, limit=-1)
