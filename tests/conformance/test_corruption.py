"""Corruption: a corrupt stored entry is reported with its session and position, and the rest
of the session stays readable."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from memweave import ChatMessage, CorruptRecord, MessageCountReducer
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


async def test_corrupt_entry_in_limit_read_reports_session_position(
    history: ChatHistoryProvider, harness: BackendHarness, session_id: str
) -> None:
    """A corrupt entry found by a `limit` read is named by its position in the session."""
    await history.add_messages(session_id, make_messages(10))
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, make_messages(2, text="after"))
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages(session_id, limit=3)
    assert info.value.session_id == session_id
    assert info.value.position == 10


async def test_corrupt_entry_skipped_in_limit_read_warns_session_position(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    session_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `on_corrupt="skip"`, the warning for a `limit` read names the session position."""
    history = make_history(on_corrupt="skip")
    await history.add_messages(session_id, make_messages(10))
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, make_messages(2, text="after"))
    with caplog.at_level(logging.WARNING):
        messages = await history.list_messages(session_id, limit=3)
    assert texts(messages) == ["after 0", "after 1"]
    assert any("position 10:" in record.getMessage() for record in caplog.records)


async def test_corrupt_entry_in_reduced_read_reports_session_position(
    make_history: Callable[..., ChatHistoryProvider], harness: BackendHarness, session_id: str
) -> None:
    """A corrupt entry found by a reduced (`reduce_on="read"`) read of a long session is named
    by its position in the session."""
    history = make_history(reducer=MessageCountReducer(3), reduce_on="read")
    await history.add_messages(session_id, make_messages(100))
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, make_messages(5, text="after"))
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages(session_id)
    assert info.value.position == 100


async def test_corrupt_entry_does_not_fail_write_mode_add(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    session_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `reduce_on="write"`, an add whose append succeeded returns normally when a corrupt
    entry stops the reduce; the history stays unreduced and a warning is logged."""
    history = make_history(reducer=MessageCountReducer(2), reduce_on="write")
    await history.add_messages(session_id, make_messages(2))
    await harness.write_raw(history, session_id, GARBAGE[0])
    with caplog.at_level(logging.WARNING):
        await history.add_messages(session_id, make_messages(2, text="after"))
    assert await history.count_messages(session_id) == 5
    assert any(session_id in record.getMessage() for record in caplog.records)


async def test_corrupt_entry_skipped_in_reduced_read_keeps_older_system_messages(
    make_history: Callable[..., ChatHistoryProvider], harness: BackendHarness, session_id: str
) -> None:
    """With `on_corrupt="skip"`, a reduced read of a long session skips a corrupt entry near
    its end and still keeps the system messages far from the end."""
    history = make_history(reducer=MessageCountReducer(3), reduce_on="read", on_corrupt="skip")
    before = [ChatMessage.system("rules"), *make_messages(100)]
    after = make_messages(5, text="after")
    await history.add_messages(session_id, before)
    await harness.write_raw(history, session_id, GARBAGE[0])
    await history.add_messages(session_id, after)
    expected = await MessageCountReducer(3).reduce([*before, *after])
    assert await history.list_messages(session_id) == expected
