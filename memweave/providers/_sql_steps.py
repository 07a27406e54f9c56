"""Steps `SQLChatHistoryProvider` runs inside its transactions: inserting, trimming, locating
neighbours for edits, and the small pure helpers they share."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from memweave.providers._limits import ROW_ROOM
from memweave.providers._sql_schema import Statements

__all__ = [
    "NothingStored",
    "above",
    "edited",
    "end_or_last",
    "in_chunks",
    "insert_rows",
    "lock_live",
    "merged",
    "neighbours",
    "pruning",
    "stamp",
    "storable",
    "successor",
    "trim_head",
    "utc",
]

T = TypeVar("T")

_RANGES_PER_STATEMENT = 100
_NO_END = 2**63 - 1  # above every key: a tool run that reaches the end of the session
_ROW_COST = ROW_ROOM // 2
"""What a row adds to a multi-row statement besides its data, in hex-halved bytes."""
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


async def insert_rows(
    conn: AsyncConnection, st: Statements, rows: list[dict[str, Any]], *, record_limit: int
) -> int:
    """Insert the rows whose ids the session lacks; return how many were inserted.

    `record_limit` is the server's limit on one entry (see `memweave.providers._limits`),
    which also bounds a multi-row statement (see `statement_chunks`).
    """
    if st.insert_many is not None and len(rows) > 1:
        inserted = 0
        for chunk in statement_chunks(rows, record_limit):
            flat = {
                f"{key}_{i}": value for i, row in enumerate(chunk) for key, value in row.items()
            }
            inserted += int((await conn.execute(st.insert_many(len(chunk)), flat)).rowcount)
        return inserted
    result = await conn.execute(st.insert, rows if len(rows) > 1 else rows[0])
    if st.insert_returns:
        return len(result.all())
    return int(result.rowcount)


_CHUNK_ROWS = 500
_CHUNK_BYTES = 2 << 20
"""Data per multi-row statement at most, whatever the server allows (the few MiB on the wire
a MariaDB server takes at its default 16 MiB `max_allowed_packet`)."""


def statement_chunks(
    rows: list[dict[str, Any]], record_limit: int
) -> Iterator[list[dict[str, Any]]]:
    """Split a batch into runs of at most `_CHUNK_ROWS` rows and `_CHUNK_BYTES` of data, each
    sent as one statement, that fit where one entry of `record_limit` bytes does.

    A run costs its data plus half of `ROW_ROOM` per row after the first and stays within
    `record_limit`: on MariaDB/MySQL, where the limit is `(max_allowed_packet - ROW_ROOM)
    // 2` because data travels hex-encoded, such a run's statement (twice its data and
    `ROW_ROOM` per row) fits in one packet. A single larger row is a run of its own.
    """
    chunk: list[dict[str, Any]] = []
    data = cost = 0
    for row in rows:
        size = len(row["data"])
        if chunk and (
            len(chunk) == _CHUNK_ROWS
            or data + size > _CHUNK_BYTES
            or cost + _ROW_COST + size > record_limit
        ):
            yield chunk
            chunk, data, cost = [], 0, 0
        cost += size + (_ROW_COST if chunk else 0)
        data += size
        chunk.append(row)
    if chunk:
        yield chunk


async def trim_head(
    conn: AsyncConnection, st: Statements, session_id: str, count: int, max_messages: int
) -> int:
    """Delete the oldest rows beyond `max_messages`, then tool results left at the head (see
    `trim_count`); return how many rows remain."""
    params = {"sid": session_id, "k": count - max_messages}
    cut, head = (await conn.execute(st.trim_probe, params)).one()
    if cut is None:  # the stored count was off; trust the rows
        count = int((await conn.execute(st.recount, params)).scalar_one())
        if count <= max_messages:
            return count
        params["k"] = count - max_messages
        cut, head = (await conn.execute(st.trim_probe, params)).one()
    if head is None:  # only tool results from the cut on: nothing can stay
        await conn.execute(st.purge, params)
        return 0
    deleted = (await conn.execute(st.trim_before, {**params, "head": head})).rowcount
    return count - int(deleted)


class NothingStored(Exception):
    """Rolls back an append whose batch held only stored ids."""


async def lock_live(conn: AsyncConnection, st: Statements, session_id: str) -> int | None:
    """Lock the session row; return its message count, or None when unknown or expired."""
    row = (await conn.execute(st.lock_session, {"sid": session_id})).one_or_none()
    if row is None or row.expired:
        return None
    return int(row.message_count)


async def stamp(ids: list[str], conn: AsyncConnection, st: Statements) -> None:
    await conn.execute(st.stamp, {"ids": ids})


async def neighbours(
    conn: AsyncConnection, st: Statements, session_id: str, keys: list[int]
) -> tuple[dict[int, int | None], dict[int, int | None]]:
    """For each key, the next and the previous key of an entry that is not a tool result."""
    after: dict[int, int | None] = {}
    before: dict[int, int | None] = {}
    for chunk in in_chunks(keys, _RANGES_PER_STATEMENT):
        params: dict[str, Any] = {"sid": session_id}
        params.update((f"k_{i}", key) for i, key in enumerate(chunk))
        row = (await conn.execute(st.neighbours(len(chunk)), params)).one()
        for i, key in enumerate(chunk):
            after[key], before[key] = row[2 * i], row[2 * i + 1]
    return after, before


async def edited(conn: AsyncConnection, st: Statements, session_id: str, left: int) -> None:
    """Record a deletion: the new count and `updated_at`, or drop a session left empty."""
    params = {"sid": session_id, "count": left}
    await conn.execute(st.edited if left > 0 else st.delete_session, params)


def pruning(
    ids: list[str], cutoff: float
) -> Callable[[AsyncConnection, Statements], Awaitable[int]]:
    async def work(conn: AsyncConnection, st: Statements) -> int:
        # Locked and checked again: a session written since it was selected stays.
        params = {"ids": ids, "cutoff": cutoff}
        confirmed = list((await conn.execute(st.lock_stale, params)).scalars())
        if confirmed:
            await conn.execute(st.purge_many, {"ids": confirmed})
            await conn.execute(st.delete_sessions, {"ids": confirmed})
        return len(confirmed)

    return work


def merged(ranges: Iterator[tuple[int, int]] | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted half-open key ranges with the touching or overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def end_or_last(key: int | None) -> int:
    return _NO_END if key is None else key


def in_chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def storable(text: str) -> bool:
    """Whether `text` could be a stored id (else no row holds it, and drivers may refuse it)."""
    return 0 < len(text) <= 256 and _UNSTORABLE.search(text) is None


def above(after: str) -> tuple[str, int]:
    """The lower bound `(bound, 1 for > or 0 for >=)` of the stored ids sorting after `after`.

    Ids hold no control characters or surrogates, and drivers refuse to send some of them,
    so `after` is cut at the first such character, which is raised to the next character
    an id may hold: every stored id above `after` is at or above the result.
    """
    bad = _UNSTORABLE.search(after)
    if bad is None:
        return after, 1
    code = ord(bad.group())
    raised = 0x20 if code < 0x20 else 0xA0 if code < 0xA0 else 0xE000
    return after[: bad.start()] + chr(raised), 0


def utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(float(seconds), UTC)


def successor(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix`, in code point order
    (None when there is none), so a prefix scan is an index range with no LIKE escaping."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            return "".join(chars) + chr(code)
    return None
