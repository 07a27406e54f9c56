"""Sessions at scale: cursor-paged `list_sessions`, `session_info`, `prune`, `purge_expired`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from memweave.errors import InvalidArgument
from memweave.providers import ChatHistoryProvider, SessionInfo
from tests.conformance._builders import make_messages
from tests.conformance._harness import BackendHarness


async def test_list_sessions_limit_returns_the_smallest_ids(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str], session_prefix: str
) -> None:
    """`limit=N` returns the N smallest ids, in code-point order."""
    ids = [new_session_id(suffix) for suffix in ("-c", "-a", "-b", "-d")]
    for session_id in ids:
        await history.add_messages(session_id, make_messages(1))
    assert await history.list_sessions(session_prefix, limit=2) == sorted(ids)[:2]


async def test_list_sessions_after_pages_through_every_id_once(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str], session_prefix: str
) -> None:
    """Pages chained with `after=` the last id of the previous page hold every id once, in
    order."""
    ids = sorted(new_session_id(f"-{i:02d}") for i in range(11))
    for session_id in ids:
        await history.add_messages(session_id, make_messages(1))
    pages = [await history.list_sessions(session_prefix, limit=3)]
    while pages[-1]:
        pages.append(await history.list_sessions(session_prefix, limit=3, after=pages[-1][-1]))
    assert [len(page) for page in pages] == [3, 3, 3, 2, 0]
    assert [session_id for page in pages for session_id in page] == ids


async def test_list_sessions_after_is_exclusive_and_need_not_exist(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str], session_prefix: str
) -> None:
    """`after` excludes itself, and any string works as a cursor."""
    a, b, c = new_session_id("-a"), new_session_id("-b"), new_session_id("-c")
    for session_id in (a, b, c):
        await history.add_messages(session_id, make_messages(1))
    assert await history.list_sessions(session_prefix, after=a) == [b, c]
    assert await history.list_sessions(session_prefix, after=a + "\U0010ffff") == [b, c]
    assert await history.list_sessions(session_prefix, after=c) == []
    assert await history.list_sessions(session_prefix, after=session_prefix + "\U0010ffff") == []


async def test_list_sessions_orders_hostile_ids_by_code_point(
    history: ChatHistoryProvider, session_prefix: str
) -> None:
    """Ids with pattern, quote, case and unicode variants page in code-point order."""
    suffixes = ["*", "%", "_", "{x}", ":", "'", '"', "ABC", "abc", "abc ", "ábc", "😀", "~"]
    ids = sorted(session_prefix + suffix for suffix in suffixes)
    for session_id in ids:
        await history.add_messages(session_id, make_messages(1))
    got: list[str] = []
    after: str | None = None
    while True:
        page = await history.list_sessions(session_prefix, limit=4, after=after)
        if not page:
            break
        got.extend(page)
        after = page[-1]
    assert got == ids


@pytest.mark.parametrize("limit", [0, -1, True, 2.0, "5"])
async def test_list_sessions_limit_must_be_positive(
    history: ChatHistoryProvider, limit: object
) -> None:
    """A `limit` that is not a positive int is an `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        await history.list_sessions(limit=limit)  # type: ignore[arg-type]


async def test_list_sessions_after_must_be_a_str(history: ChatHistoryProvider) -> None:
    """An `after` that is not a str is an `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        await history.list_sessions(after=3)  # type: ignore[arg-type]


async def test_list_sessions_pages_skip_cleared_and_expired(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    new_session_id: Callable[[str], str],
    session_prefix: str,
) -> None:
    """A page never holds a cleared or expired session, and is still full when later ones
    exist."""
    history = make_history(ttl=timedelta(hours=1))
    ids = sorted(new_session_id(f"-{i}") for i in range(6))
    for session_id in ids:
        await history.add_messages(session_id, make_messages(1))
    await history.clear(ids[0])
    await harness.expire_now(history, ids[1])
    assert await history.list_sessions(session_prefix, limit=2) == ids[2:4]


async def test_session_info_reports_count_and_times(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """`session_info` gives the id, the message count and UTC creation and update times."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    await history.add_messages(session_id, make_messages(3))
    info = await history.session_info(session_id)
    assert isinstance(info, SessionInfo)
    assert (info.id, info.message_count) == (session_id, 3)
    assert info.created_at is not None
    assert info.updated_at is not None
    assert info.created_at.utcoffset() == timedelta(0)
    assert started <= info.created_at <= info.updated_at
    assert info.updated_at <= datetime.now(UTC) + timedelta(seconds=5)


async def test_session_info_updated_at_moves_on_add_not_created_at(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A later add moves `updated_at` but not `created_at`; re-adding stored ids moves
    neither."""
    messages = make_messages(2)
    await history.add_messages(session_id, messages[:1])
    first = await history.session_info(session_id)
    await asyncio.sleep(0.05)
    await history.add_messages(session_id, messages[1:])
    second = await history.session_info(session_id)
    await asyncio.sleep(0.05)
    await history.add_messages(session_id, messages)
    third = await history.session_info(session_id)
    assert first is not None
    assert second is not None
    assert third is not None
    assert second.created_at == first.created_at
    assert first.updated_at is not None
    assert second.updated_at is not None
    assert second.updated_at > first.updated_at
    assert third.updated_at == second.updated_at
    assert third.message_count == 2


async def test_session_info_of_unknown_cleared_or_expired_session_is_none(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    new_session_id: Callable[[str], str],
) -> None:
    """`session_info` is None for a session never written, cleared, or expired."""
    history = make_history(ttl=timedelta(hours=1))
    cleared, expired = new_session_id("-c"), new_session_id("-e")
    for session_id in (cleared, expired):
        await history.add_messages(session_id, make_messages(1))
    await history.clear(cleared)
    await harness.expire_now(history, expired)
    for session_id in (new_session_id("-never"), cleared, expired):
        assert await history.session_info(session_id) is None


async def test_session_info_follows_trimming(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """The count `session_info` reports is the stored count after `max_messages` trims."""
    history = make_history(max_messages=4)
    await history.add_messages(session_id, make_messages(10))
    info = await history.session_info(session_id)
    assert info is not None
    assert info.message_count == 4


async def test_prune_deletes_only_sessions_idle_longer_than_older_than(
    make_isolated_history: Callable[..., ChatHistoryProvider],
) -> None:
    """`prune(older_than)` deletes the sessions not updated within it and keeps the others."""
    history = make_isolated_history()
    for session_id in ("old-1", "old-2"):
        await history.add_messages(session_id, make_messages(2))
    await asyncio.sleep(1.2)
    await history.add_messages("fresh", make_messages(1))
    await history.add_messages("old-2", make_messages(1))  # written again: fresh now
    assert await history.prune(timedelta(seconds=1), dry_run=True) == 1
    assert await history.list_sessions() == ["fresh", "old-1", "old-2"]
    assert await history.prune(timedelta(seconds=1)) == 1
    assert await history.list_sessions() == ["fresh", "old-2"]
    assert await history.session_info("old-1") is None
    assert await history.prune(timedelta(seconds=1)) == 0


async def test_prune_works_past_one_batch(
    make_isolated_history: Callable[..., ChatHistoryProvider],
) -> None:
    """`prune` goes through every batch: more idle sessions than one step deletes all go."""
    from memweave.providers.base import BATCH_SIZE

    history = make_isolated_history()
    total = BATCH_SIZE + 7
    ids = [f"s-{i:05d}" for i in range(total)]
    for start in range(0, total, 100):
        await asyncio.gather(
            *(history.add_messages(i, make_messages(1)) for i in ids[start : start + 100])
        )
    await asyncio.sleep(1.1)
    assert await history.prune(timedelta(seconds=1)) == total
    assert await history.list_sessions(limit=1) == []


@pytest.mark.parametrize("older_than", [timedelta(0), timedelta(seconds=-1), 30, None])
async def test_prune_older_than_must_be_a_positive_timedelta(
    history: ChatHistoryProvider, older_than: object
) -> None:
    """An `older_than` that is not a positive timedelta is an `InvalidArgument`."""
    with pytest.raises(InvalidArgument):
        await history.prune(older_than)  # type: ignore[arg-type]


async def test_purge_expired_leaves_live_sessions(
    make_isolated_history: Callable[..., ChatHistoryProvider], harness: BackendHarness
) -> None:
    """`purge_expired` removes nothing live; expired sessions stay unlisted after it."""
    history = make_isolated_history(ttl=timedelta(hours=1))
    for session_id in ("live", "gone"):
        await history.add_messages(session_id, make_messages(2))
    await harness.expire_now(history, "gone")
    purged = await history.purge_expired()
    assert purged in (0, 1)
    assert await history.list_sessions() == ["live"]
    assert await history.count_messages("live") == 2
    assert await history.purge_expired() == 0
