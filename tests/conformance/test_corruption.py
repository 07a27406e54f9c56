"""Corruption: a corrupt stored entry is reported with its session and position, and the rest
of the session stays readable."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from memweave import CorruptRecord
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts
from tests.conformance._harness import BackendHarness

GARBAGE = [
    b"not json at all",
    b'{"v": 99, "m": {"role": "user", "content": "future"}}',
    b'{"v": 1, "m": {"role": "wizard", "content": "x", "id": "m1", '
    b'"created_at": "2024-01-01T00:00:00Z"}}',
    b"\xff\xfe\x00binary",
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_corrupt_entry_raises_with_session_and_position(
    history: ChatHistoryProvider, harness: BackendHarness, session_id: str, garbage: bytes
) -> None:
    """A corrupt entry raises `CorruptRecord` naming the session and its position."""
    await history.add_messages(session_id, make_messages(2))
    await harness.write_raw(history, session_id, garbage)
    await history.add_messages(session_id, make_messages(1, text="after"))
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages(session_id)
    assert info.value.session_id == session_id
    assert info.value.position == 2


async def test_corrupt_entry_skipped_with_warning(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    session_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `on_corrupt="skip"`, the other messages are returned and a warning is logged."""
    history = make_history(on_corrupt="skip")
    await history.add_messages(session_id, make_messages(2))
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, make_messages(1, text="after"))
    with caplog.at_level(logging.WARNING):
        messages = await history.list_messages(session_id)
    assert texts(messages) == ["message 0", "message 1", "after 0"]
    assert any(session_id in record.getMessage() for record in caplog.records)


async def test_corrupt_entry_leaves_limit_reads_of_good_tail(
    history: ChatHistoryProvider, harness: BackendHarness, session_id: str
) -> None:
    """A read of the newest entries that excludes the corrupt one still succeeds."""
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, make_messages(3))
    assert texts(await history.list_messages(session_id, limit=3)) == texts(make_messages(3))
    assert await history.count_messages(session_id) == 4
