"""The hot calls of the SQL storage on the driver's own connection, for aiosqlite and asyncpg.

A LangGraph run calls `put_writes` for each task and `put` for each step, and `get_tuple` or
`list` for a thread and namespace; on SQLite and PostgreSQL these run here, as prepared SQL on
the pooled connection's driver object, which takes fewer trips than SQLAlchemy's adapters (each
of their statements is four hops to aiosqlite's thread, and a transaction two more round trips
to PostgreSQL). The SQL is compiled from the same tables, the names quoted by the dialect, and
every value is a bound parameter. What this does not serve (MariaDB, other drivers, reads
across namespaces or threads, deletes, copies, prunes) stays on SQLAlchemy Core.

- SQLite: the calls of one event loop share one connection (`Reader`), as LangGraph's own
  saver does; a write is its statements then one `COMMIT` (three hops for a `put`), in a
  transaction SQLite opens on the first write; lists of ids travel as one JSON array
  (`IN (SELECT value FROM json_each(?))`).
- PostgreSQL: each call is one statement, atomic by itself: `put` inserts its blobs in a
  data-modifying `WITH` and upserts the checkpoint row in the same statement; lists travel as
  arrays (`unnest`, `= ANY`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memweave.integrations.langgraph._saver_sql_schema import SaverTables

__all__ = [
    "FAST_CHECKPOINT_COLUMNS",
    "FastPath",
    "Reader",
    "driver_errors",
    "fast_path",
]

FAST_CHECKPOINT_COLUMNS = (
    "thread", "ns", "checkpoint_id", "thread_id", "checkpoint_ns", "parent_id", "run", "delta",
    "refs", "document", "meta",
)  # fmt: skip
"""The order of a checkpoint row's values in `FastPath.put`."""

_HEAD = "thread_id, checkpoint_ns, checkpoint_id, parent_id, document, meta, refs"
_CP = ", ".join(FAST_CHECKPOINT_COLUMNS)
_CP_SET = "thread_id, checkpoint_ns, parent_id, run, delta, refs, document, meta"
_WR = "thread, ns, checkpoint_id, task_id, idx, channel, type, data, task_path"


class FastPath:
    """The statements of one dialect, and how to run them on its driver's connection."""

    def __init__(self, tables: SaverTables, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.format_table
        self._names = {
            "cp": quote(tables.checkpoints),
            "wr": quote(tables.writes),
            "bl": quote(tables.blobs),
            "head": _HEAD,
            "cp_columns": _CP,
            "wr_columns": _WR,
            "cp_update": ", ".join(f"{c} = excluded.{c}" for c in _CP_SET.split(", ")),
            "wr_update": ", ".join(
                f"{c} = excluded.{c}" for c in ("channel", "type", "data", "task_path")
            ),
        }

    def sql(self, template: str) -> str:
        """`template` with the table names (quoted by the dialect, from a checked prefix) and
        column lists filled in; values are never part of it, only `?` or `$n` parameters."""
        return template.format_map(self._names)

    async def put(self, conn: Any, row: Sequence[Any], blobs: Sequence[Sequence[Any]]) -> None:
        """Store the missing blobs and upsert the checkpoint row (`row` in `_CP` order)."""
        raise NotImplementedError

    async def put_writes(
        self, conn: Any, kept: Sequence[Sequence[Any]], replaced: Sequence[Sequence[Any]]
    ) -> None:
        """Insert `kept` writes where absent and upsert `replaced` ones (rows in `_WR` order)."""
        raise NotImplementedError

    async def heads(
        self,
        conn: Any,
        thread: str,
        ns: str,
        checkpoint_id: str | None,
        below: str | None,
        count: int | None,
    ) -> list[Sequence[Any]]:
        """Checkpoint rows (`_HEAD` columns) of one thread and namespace, newest first."""
        raise NotImplementedError

    async def details(
        self, conn: Any, thread: str, ns: str, ids: Sequence[str], keys: Sequence[str]
    ) -> list[Sequence[Any]]:
        """Writes of checkpoints `ids` and blobs `keys` of one thread and namespace, as rows
        `(kind, ns, checkpoint id or blob key, task_id, idx, channel, type, data, task_path)`
        with kind 0 for a write and 1 for a blob."""
        raise NotImplementedError


class _SQLite(FastPath):
    def __init__(self, tables: SaverTables, dialect: Dialect) -> None:
        super().__init__(tables, dialect)
        upsert = "ON CONFLICT (thread, ns, checkpoint_id, task_id, idx) DO UPDATE SET "
        self.put_blob = self.sql(
            "INSERT INTO {bl} (thread, ns, blob_key, type, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING"
        )
        self.put_cp = self.sql(
            "INSERT INTO {cp} ({cp_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (thread, ns, checkpoint_id) DO UPDATE SET {cp_update}"
        )
        values = "INSERT INTO {wr} ({wr_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        self.keep = self.sql(values + "ON CONFLICT DO NOTHING")
        self.replace = self.sql(values + upsert + "{wr_update}")
        self.select = self.sql("SELECT {head} FROM {cp} WHERE thread = ? AND ns = ?")
        self.details_sql = self.sql(
            "SELECT 0, ns, checkpoint_id, task_id, idx, channel, type, data, task_path "
            "FROM {wr} WHERE thread = ? AND ns = ? "
            "AND checkpoint_id IN (SELECT value FROM json_each(?)) UNION ALL "
            "SELECT 1, ns, blob_key, NULL, NULL, NULL, type, data, NULL FROM {bl} "
            "WHERE thread = ? AND ns = ? AND blob_key IN (SELECT value FROM json_each(?))"
        )

    async def put(self, conn: Any, row: Sequence[Any], blobs: Sequence[Sequence[Any]]) -> None:
        if blobs:
            await conn.executemany(self.put_blob, blobs)
        await conn.execute(self.put_cp, row)

    async def put_writes(
        self, conn: Any, kept: Sequence[Sequence[Any]], replaced: Sequence[Sequence[Any]]
    ) -> None:
        if kept:
            await conn.executemany(self.keep, kept)
        if replaced:
            await conn.executemany(self.replace, replaced)

    async def heads(
        self,
        conn: Any,
        thread: str,
        ns: str,
        checkpoint_id: str | None,
        below: str | None,
        count: int | None,
    ) -> list[Sequence[Any]]:
        sql, params = self.select, list[Any]([thread, ns])
        if checkpoint_id is not None:
            sql += " AND checkpoint_id = ?"
            params.append(checkpoint_id)
        if below is not None:
            sql += " AND checkpoint_id < ?"
            params.append(below)
        sql += " ORDER BY checkpoint_id DESC"
        if count is not None:
            sql += " LIMIT ?"
            params.append(count)
        return list(await conn.execute_fetchall(sql, params))

    async def details(
        self, conn: Any, thread: str, ns: str, ids: Sequence[str], keys: Sequence[str]
    ) -> list[Sequence[Any]]:
        params = [thread, ns, json.dumps(list(ids)), thread, ns, json.dumps(list(keys))]
        return list(await conn.execute_fetchall(self.details_sql, params))


class _Postgres(FastPath):
    def __init__(self, tables: SaverTables, dialect: Dialect) -> None:
        super().__init__(tables, dialect)
        upsert = "ON CONFLICT (thread, ns, checkpoint_id, task_id, idx) DO UPDATE SET "
        self.put_sql = self.sql(
            "WITH blobs AS (INSERT INTO {bl} (thread, ns, blob_key, type, data) "
            "SELECT $1, $2, k, t, d FROM unnest($12::text[], $13::text[], $14::bytea[]) "
            "AS b(k, t, d) ON CONFLICT DO NOTHING) "
            "INSERT INTO {cp} ({cp_columns}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (thread, ns, checkpoint_id) DO UPDATE SET {cp_update}"
        )
        rows = (
            "INSERT INTO {wr} ({wr_columns}) SELECT $1, $2, $3, t, i, c, y, d, p FROM "
            "unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::bytea[], $9::text[]) "
            "AS w(t, i, c, y, d, p) "
        )
        self.keep = self.sql(rows + "ON CONFLICT DO NOTHING")
        self.replace = self.sql(rows + upsert + "{wr_update}")
        self.select = self.sql("SELECT {head} FROM {cp} WHERE thread = $1 AND ns = $2")
        # A primary-key lookup per id (`OFFSET 0` keeps the planner from merging the lateral
        # subquery away): a fresh table without statistics would otherwise be scanned over
        # the whole thread with `= ANY` as a filter.
        self.details_sql = self.sql(
            "SELECT 0, w.ns, w.checkpoint_id, w.task_id, w.idx, w.channel, w.type, w.data, "
            "w.task_path FROM unnest($3::text[]) AS c(id) CROSS JOIN LATERAL (SELECT * FROM {wr} "
            "WHERE thread = $1 AND ns = $2 AND checkpoint_id = c.id OFFSET 0) AS w "
            "UNION ALL SELECT 1, b.ns, b.blob_key, NULL, NULL, NULL, b.type, b.data, NULL "
            "FROM unnest($4::text[]) AS k(key) CROSS JOIN LATERAL (SELECT * FROM {bl} "
            "WHERE thread = $1 AND ns = $2 AND blob_key = k.key OFFSET 0) AS b"
        )

    async def put(self, conn: Any, row: Sequence[Any], blobs: Sequence[Sequence[Any]]) -> None:
        columns = list(zip(*blobs, strict=True)) if blobs else [(), (), (), (), ()]
        keys, types, data = (list(c) for c in columns[2:])
        await conn.execute(self.put_sql, *row, keys, types, data)

    async def put_writes(
        self, conn: Any, kept: Sequence[Sequence[Any]], replaced: Sequence[Sequence[Any]]
    ) -> None:
        if kept and replaced:
            async with conn.transaction():
                await self._writes(conn, self.keep, kept)
                await self._writes(conn, self.replace, replaced)
        elif kept or replaced:
            await self._writes(conn, self.keep if kept else self.replace, kept or replaced)

    @staticmethod
    async def _writes(conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        columns = [list(c) for c in zip(*rows, strict=True)]
        await conn.execute(sql, rows[0][0], rows[0][1], rows[0][2], *columns[3:])

    async def heads(
        self,
        conn: Any,
        thread: str,
        ns: str,
        checkpoint_id: str | None,
        below: str | None,
        count: int | None,
    ) -> list[Sequence[Any]]:
        sql, params = self.select, list[Any]([thread, ns])
        if checkpoint_id is not None:
            params.append(checkpoint_id)
            sql += f" AND checkpoint_id = ${len(params)}"
        if below is not None:
            params.append(below)
            sql += f" AND checkpoint_id < ${len(params)}"
        sql += " ORDER BY checkpoint_id DESC"
        if count is not None:
            params.append(count)
            sql += f" LIMIT ${len(params)}"
        return list(await conn.fetch(sql, *params))

    async def details(
        self, conn: Any, thread: str, ns: str, ids: Sequence[str], keys: Sequence[str]
    ) -> list[Sequence[Any]]:
        return list(await conn.fetch(self.details_sql, thread, ns, list(ids), list(keys)))


class Reader:
    """One event loop's SQLite connection for the fast path, checked out on first use."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.connection: AsyncConnection | None = None

    async def driver(self, engine: AsyncEngine) -> Any:
        """The driver's connection (aiosqlite's), checked out of `engine` the first time."""
        if self.connection is None:
            self.connection = await engine.connect()
        raw = await self.connection.get_raw_connection()
        return raw.driver_connection

    async def aclose(self) -> None:
        """Close the connection itself (on the loop it belongs to), not only return it to its
        pool: when a loop shuts down, its engine is disposed of at the same time, and a
        connection returned to a disposed pool would never be closed (aiosqlite's thread
        would outlive the loop)."""
        if self.connection is not None:
            connection, self.connection = self.connection, None
            await connection.invalidate()
            await connection.close()


def fast_path(tables: SaverTables, dialect: Dialect) -> FastPath | None:
    """The fast path for the engine's dialect and driver, or None (MariaDB, other drivers)."""
    if dialect.name == "sqlite" and dialect.driver == "aiosqlite":
        return _SQLite(tables, dialect)
    if dialect.name == "postgresql" and dialect.driver == "asyncpg":
        return _Postgres(tables, dialect)
    return None


@functools.cache
def driver_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of the drivers the fast path uses (asyncpg's only when installed)."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is in the postgres extra
        pass
    else:
        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    return tuple(errors)
