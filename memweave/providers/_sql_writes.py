"""The write transactions of `SQLChatHistoryProvider`'s primitives: each factory returns the
work `SQLDatabase.write` runs in one transaction (run again whole if it was not applied)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from memweave.providers._records import DeleteOutcome, StoredRecord
from memweave.providers._sql_database import SQLDatabase, Work
from memweave.providers._sql_schema import Statements
from memweave.providers._sql_steps import (
    NothingStored,
    edited,
    end_or_last,
    in_chunks,
    insert_rows,
    lock_live,
    merged,
    neighbours,
    trim_head,
)

__all__ = [
    "appending",
    "clearing",
    "deleting",
    "purging_expired",
    "removing",
    "replacing",
    "touch",
    "truncating",
]

_IDS_PER_STATEMENT = 1000
_RANGES_PER_STATEMENT = 100


async def touch(conn: AsyncConnection, st: Statements, params: dict[str, Any]) -> tuple[int, bool]:
    """Upsert and lock the session row; return its count and whether it had expired."""
    result = await conn.execute(st.touch, params)
    if not st.touch_returns:
        result = await conn.execute(st.session_state, params)
    count, expired = result.one()
    return int(count), bool(expired)


def _rows(session_id: str, records: Sequence[StoredRecord]) -> list[dict[str, Any]]:
    return [
        {"session_id": session_id, "message_id": r.id, "role": r.role, "data": r.data}
        for r in records
    ]


def appending(
    records: Sequence[StoredRecord],
    params: dict[str, Any],
    max_messages: int | None,
    database: SQLDatabase,
) -> Work[None]:
    """Append the records the session lacks and trim to `max_messages`; raises
    `NothingStored` (rolling back the touch) when the batch stored and trimmed nothing.
    Rows go in statements that fit `database.record_limit`, read once it is set up."""
    session_id = params["sid"]
    rows = _rows(session_id, records)

    async def work(conn: AsyncConnection, st: Statements) -> None:
        stored, expired = await touch(conn, st, params)
        if expired:
            await conn.execute(st.purge, params)
        inserted = await insert_rows(conn, st, rows, record_limit=database.record_limit)
        count = inserted if expired else stored - len(rows) + inserted
        if inserted == 0 and (max_messages is None or count <= max_messages):
            # The touch renewed `updated_at` in the same round trip as the lock, which
            # a batch that stored nothing must not do: undo it all.
            raise NothingStored
        kept = count
        if max_messages is not None and count > max_messages:
            kept = await trim_head(conn, st, session_id, count, max_messages)
        if kept == 0:
            await conn.execute(st.delete_session, params)
        elif expired:
            await conn.execute(st.restart, {**params, "count": kept})
        elif kept != stored:
            await conn.execute(st.set_count, {**params, "count": kept})

    return work


def clearing(session_id: str) -> Work[None]:
    """Delete the session's row and its messages."""

    async def work(conn: AsyncConnection, st: Statements) -> None:
        params = {"sid": session_id}
        await conn.execute(st.delete_session, params)
        await conn.execute(st.purge, params)

    return work


def removing(session_id: str, message_ids: Sequence[str]) -> Work[None]:
    """Delete these messages only, keeping the count in step."""

    async def work(conn: AsyncConnection, st: Statements) -> None:
        params = {"sid": session_id, "n": 0, "ttl": None, "ids": list(message_ids)}
        stored, expired = await touch(conn, st, params)
        if expired:
            return
        left = stored - (await conn.execute(st.remove, params)).rowcount
        if left > 0:
            await conn.execute(st.set_count, {**params, "count": left})
        else:
            await conn.execute(st.delete_session, params)

    return work


def deleting(session_id: str, wanted: Sequence[str]) -> Work[DeleteOutcome]:
    """Delete the named messages (storable ids) with the tool results after each, or
    nothing when a named tool result would outlive its call."""

    async def work(conn: AsyncConnection, st: Statements) -> DeleteOutcome:
        stored = await lock_live(conn, st, session_id)
        if stored is None:
            return DeleteOutcome(0)
        named: dict[int, tuple[str, str]] = {}
        for chunk in in_chunks(wanted, _IDS_PER_STATEMENT):
            found = await conn.execute(st.named, {"sid": session_id, "ids": chunk})
            named.update((int(key), (message_id, role)) for key, message_id, role in found)
        if not named:
            return DeleteOutcome(0)
        after, before = await neighbours(conn, st, session_id, sorted(named))
        heads = {key for key, (_, role) in named.items() if role != "tool"}
        for key in sorted(named):
            if named[key][1] == "tool" and before[key] not in heads:
                return DeleteOutcome(0, orphan=named[key][0])
        # A head and the run of tool results after it: up to the next entry that is
        # not a tool result, or to the end of the session.
        ranges = merged((key, end_or_last(after[key])) for key in heads)
        deleted = 0
        for batch in in_chunks(ranges, _RANGES_PER_STATEMENT):
            params: dict[str, Any] = {"sid": session_id}
            for i, (start, end) in enumerate(batch):
                params[f"a_{i}"], params[f"b_{i}"] = start, end
            result = await conn.execute(st.delete_ranges(len(batch)), params)
            deleted += int(result.rowcount)
        if deleted:
            await edited(conn, st, session_id, stored - deleted)
        return DeleteOutcome(deleted)

    return work


def truncating(session_id: str, message_id: str) -> Work[int | None]:
    """Delete what follows the message (a storable id) and its tool results; None when
    the session does not hold it."""

    async def work(conn: AsyncConnection, st: Statements) -> int | None:
        stored = await lock_live(conn, st, session_id)
        if stored is None:
            return None
        found = await conn.execute(st.named, {"sid": session_id, "ids": [message_id]})
        key = found.scalar()
        if key is None:
            return None
        head = (await neighbours(conn, st, session_id, [key]))[0][key]
        if head is None:
            return 0  # only the message's tool results follow it
        result = await conn.execute(st.cut_from, {"sid": session_id, "head": head})
        deleted = int(result.rowcount)
        if deleted:
            await edited(conn, st, session_id, stored - deleted)
        return deleted

    return work


async def purging_expired(conn: AsyncConnection, st: Statements) -> int:
    """Delete one batch of expired sessions and their messages; return how many."""
    ids = list((await conn.execute(st.expired_ids)).scalars())
    if ids:
        await conn.execute(st.purge_many, {"ids": ids})
        await conn.execute(st.delete_expired, {"ids": ids})
    return len(ids)


def replacing(
    session_id: str,
    records: Sequence[StoredRecord],
    expected_last_id: str | None,
    database: SQLDatabase,
) -> Work[bool]:
    """Replace the session's messages with `records`, unless its newest id is no longer
    `expected_last_id` (False then)."""
    rows = _rows(session_id, records)

    async def work(conn: AsyncConnection, st: Statements) -> bool:
        params = {"sid": session_id, "n": 0, "ttl": None}
        stored, expired = await touch(conn, st, params)
        last = (await conn.execute(st.last_id, params)).scalar()
        if last != expected_last_id:
            if stored == 0 and not expired:
                await conn.execute(st.delete_session, params)  # made by the touch
            return False
        await conn.execute(st.purge, params)
        limit = database.record_limit
        inserted = await insert_rows(conn, st, rows, record_limit=limit) if rows else 0
        if inserted:
            await conn.execute(st.reset_count, {**params, "count": inserted})
        else:
            await conn.execute(st.delete_session, params)
        return True

    return work
