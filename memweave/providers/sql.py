"""`SQLChatHistoryProvider`: histories in SQLite, PostgreSQL or MariaDB/MySQL via SQLAlchemy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from memweave._codec import OnCorrupt
from memweave._urls import mask_url
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidSessionId,
    MemweaveError,
    MissingDependency,
    SchemaMismatch,
)
from memweave.providers._sql_schema import (
    SCHEMA_VERSION,
    SchemaState,
    Statements,
    build_metadata,
    build_statements,
    read_schema_state,
    tables_for,
    upgrade_schema,
)
from memweave.providers.base import (
    BATCH_SIZE,
    ChatHistoryProvider,
    DeleteOutcome,
    PageRow,
    ReduceOn,
    SessionInfo,
    StoredRecord,
)
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

__all__ = ["DEFAULT_URL", "SQLChatHistoryProvider", "build_metadata", "metadata"]

DEFAULT_URL = "sqlite+aiosqlite:///memweave.db"
"""Where a provider built with neither `url` nor `engine` stores its histories."""

metadata = build_metadata()
"""The tables under the default prefix `memweave_`, for your own Alembic migrations; use
`build_metadata(prefix)` for another prefix."""

T = TypeVar("T")

# Async driver used when a URL names only the database ("postgresql://...").
_DEFAULT_DRIVERS = {
    "sqlite": "aiosqlite",
    "postgresql": "asyncpg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
}
_EXTRAS = {"asyncpg": "postgres", "aiomysql": "mysql", "asyncmy": "mysql"}
_SQLITE_BUSY_TIMEOUT = 30.0
_ATTEMPTS = 5
_IDS_PER_STATEMENT = 1000
_RANGES_PER_STATEMENT = 100
_NO_END = 2**63 - 1  # above every key: a tool run that reaches the end of the session
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Characters no stored id holds (see `validate_session_id` and message ids)."""


class SQLChatHistoryProvider(ChatHistoryProvider):
    """SQL based, process-safe history store: every call is one transaction.

    Messages live in `<prefix>messages`, one row each, ordered by a database-generated key,
    with a unique `(session_id, message_id)` that the dialect's insert-or-ignore (`ON CONFLICT
    DO NOTHING`, MySQL's `INSERT IGNORE`) turns into idempotent appends. `<prefix>sessions`
    keeps each session's message count, expiry and times, so `count_messages`,
    `session_info` and `list_sessions` never scan messages; a `list_sessions` page is one
    range of its primary key. An append upserts the session row (which also serialises
    writers of one session and sets its times), then inserts the batch; with `max_messages`
    it trims the oldest rows (and tool results left at the head) in the same transaction.
    `limit=N` is one indexed `ORDER BY key DESC LIMIT N`, and a page after or before a
    message finds it by the unique index, then reads a range of keys; so neither appends,
    recent reads nor pages grow with the history. `delete_messages` and `truncate_after` lock
    the session row and delete key ranges in one transaction; `prune` walks the
    `updated_at` index a batch at a time.

    Ttl expiry uses the database's clock, as do the session times. An expired session reads
    as empty at once; its rows are deleted when it is written to again, or by
    `purge_expired()`. Reads never write, so a role with SELECT only can list, read and page
    once the tables are at the current schema version.

    An engine built from a URL gets SQLite's WAL journal, `synchronous=NORMAL` and a 30 s busy
    timeout (so several processes can share one file), and READ COMMITTED on MariaDB/MySQL.
    An engine you pass in is used as it is and never closed here. Change the tables only
    through a provider, since each write keeps the session's count in step with its rows.
    Ids compare exactly on every database (see `ExactString`), which needs MariaDB 10.2+ or
    MySQL 8.0.17+. Tables of schema version 1 (before session times) are upgraded in place
    by the first provider that opens them with `create_tables=True`.

    Args:
        url: A SQLAlchemy URL: `sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...` (the driver may be left out). Defaults to
            `sqlite+aiosqlite:///memweave.db` when no `engine` is given.
        engine: An `AsyncEngine` to use instead of a URL; the caller keeps ownership.
        table_prefix: First part of every table name (ASCII letters, digits, underscores).
        create_tables: Create missing tables (and upgrade older ones) on first use. With
            False they must exist already, e.g. from your Alembic migration of
            `build_metadata(table_prefix)`; nothing is then ever written on setup.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.

    Raises:
        ConfigurationError: A bad URL, option or combination of options.
        MissingDependency: The URL's driver (asyncpg, aiomysql) is not installed.

    Example:
        ```python
        async with SQLChatHistoryProvider("sqlite+aiosqlite:///chat.db") as history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"durable", "multi_process"})

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        table_prefix: str = "memweave_",
        create_tables: bool = True,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
        )
        self._tables = tables_for(table_prefix)
        self.table_prefix = table_prefix
        self.metadata = self._tables.metadata
        """The `MetaData` of this provider's tables (see `build_metadata`)."""
        self._engine, self._owns_engine = resolve_engine(url, engine)
        self._create_tables = bool(create_tables)
        self._url = self._engine.url.render_as_string(hide_password=True)
        sqlite = self._engine.dialect.name == "sqlite"
        in_memory = sqlite and self._engine.url.database in (None, "", ":memory:")
        # SQLite has one writer per file; queueing our own writers here beats busy-polling.
        self._write_lock: AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if sqlite else contextlib.nullcontext()
        )
        # An in-memory database is one shared connection, so reads queue behind writes too.
        self._read_lock = self._write_lock if in_memory else contextlib.nullcontext()
        # Our own SQLite connections open a write transaction with BEGIN IMMEDIATE by
        # themselves before the first write (see `_sqlite_pragmas`); others need it sent.
        self._sqlite = sqlite
        self._send_begin = sqlite and not self._owns_engine
        self._statements: Statements | None = None
        self._setup_lock = asyncio.Lock()

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine this provider runs on."""
        return self._engine

    # -- primitives ---------------------------------------------------------------------------

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        seconds = ttl.total_seconds() if ttl is not None else None
        params = {"sid": session_id, "n": len(records), "ttl": seconds}
        if records:
            try:
                await self._write(self._appending(records, params, max_messages))
                return
            except _NothingStored:
                pass  # rolled back; a batch of stored ids only renews the ttl
        if seconds is not None:
            await self._write(lambda conn, st: conn.execute(st.renew, params))

    def _appending(
        self, records: Sequence[StoredRecord], params: dict[str, Any], max_messages: int | None
    ) -> Callable[[AsyncConnection, Statements], Awaitable[None]]:
        session_id = params["sid"]
        rows = [
            {"session_id": session_id, "message_id": r.id, "role": r.role, "data": r.data}
            for r in records
        ]

        async def work(conn: AsyncConnection, st: Statements) -> None:
            stored, expired = await self._touch(conn, st, params)
            if expired:
                await conn.execute(st.purge, params)
            inserted = await _insert(conn, st, rows)
            count = inserted if expired else stored - len(rows) + inserted
            if inserted == 0 and (max_messages is None or count <= max_messages):
                # The touch renewed `updated_at` in the same round trip as the lock, which
                # a batch that stored nothing must not do: undo it all.
                raise _NothingStored
            kept = count
            if max_messages is not None and count > max_messages:
                kept = await _trim(conn, st, session_id, count, max_messages)
            if kept == 0:
                await conn.execute(st.delete_session, params)
            elif expired:
                await conn.execute(st.restart, {**params, "count": kept})
            elif kept != stored:
                await conn.execute(st.set_count, {**params, "count": kept})

        return work

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        st = await self._ready()
        if limit is None:
            return await self._scalars(st.read_all, {"sid": session_id})
        newest = await self._scalars(st.read_last, {"sid": session_id, "limit": limit})
        newest.reverse()
        return newest

    async def _read_system(self, session_id: str) -> list[bytes]:
        st = await self._ready()
        return await self._scalars(st.read_system, {"sid": session_id})

    async def _count(self, session_id: str) -> int:
        st = await self._ready()
        counts: list[int] = await self._scalars(st.count, {"sid": session_id})
        return int(counts[0]) if counts else 0

    async def _clear(self, session_id: str) -> None:
        async def work(conn: AsyncConnection, st: Statements) -> None:
            params = {"sid": session_id}
            await conn.execute(st.delete_session, params)
            await conn.execute(st.purge, params)

        await self._write(work)

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        st = await self._ready()
        lower: tuple[str, int] | None = None  # (bound, 1 for > and 0 for >=)
        upper: str | None = None
        if prefix is not None:
            try:
                validate_session_id(prefix)
            except InvalidSessionId:
                return []  # no stored id can start with it
            lower, upper = (prefix, 0), _successor(prefix)
        if after is not None:
            bound = _above(after)
            lower = bound if lower is None else max(lower, bound)
        if lower is not None and upper is not None and lower[0] >= upper:
            return []
        kind: Literal["gt", "ge"] | None = None
        if lower is not None:
            kind = "gt" if lower[1] else "ge"
        statement = st.list_page(kind, upper is not None, limit is not None)
        params = {"lo": lower[0] if lower else None, "hi": upper, "limit": limit}
        return await self._scalars(statement, params)

    async def _session_info(self, session_id: str) -> SessionInfo | None:
        st = await self._ready()
        rows = await self._rows(st.info, {"sid": session_id})
        if not rows:
            return None
        count, created, updated = rows[0]
        return SessionInfo(
            id=session_id,
            message_count=int(count),
            created_at=_utc(created),
            updated_at=_utc(updated),
        )

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        st = await self._ready()
        cursor = after if after is not None else before
        if cursor is None:
            rows = await self._rows(st.page_first, {"sid": session_id, "limit": limit})
            return [(message_id, data) for message_id, data in rows]
        if not _storable(cursor):
            return None
        # The cursor's own row comes first (one more than asked), telling "the cursor is
        # not stored" (no rows) from "nothing past it" (only that row) in one round trip.
        statement = st.page_after if after is not None else st.page_before
        rows = await self._rows(
            statement, {"sid": session_id, "cursor": cursor, "limit": limit + 1}
        )
        if not rows:
            return None
        page = [(message_id, data) for message_id, data in rows[1:]]
        if before is not None:
            page.reverse()
        return page

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        async def work(conn: AsyncConnection, st: Statements) -> None:
            params = {"sid": session_id, "n": 0, "ttl": None, "ids": list(message_ids)}
            stored, expired = await self._touch(conn, st, params)
            if expired:
                return
            left = stored - (await conn.execute(st.remove, params)).rowcount
            if left > 0:
                await conn.execute(st.set_count, {**params, "count": left})
            else:
                await conn.execute(st.delete_session, params)

        await self._write(work)

    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        wanted = [message_id for message_id in message_ids if _storable(message_id)]
        if not wanted:
            return DeleteOutcome(0)

        async def work(conn: AsyncConnection, st: Statements) -> DeleteOutcome:
            stored = await _lock_live(conn, st, session_id)
            if stored is None:
                return DeleteOutcome(0)
            named: dict[int, tuple[str, str]] = {}
            for chunk in _chunks(wanted, _IDS_PER_STATEMENT):
                found = await conn.execute(st.named, {"sid": session_id, "ids": chunk})
                named.update((int(key), (message_id, role)) for key, message_id, role in found)
            if not named:
                return DeleteOutcome(0)
            after, before = await _neighbours(conn, st, session_id, sorted(named))
            heads = {key for key, (_, role) in named.items() if role != "tool"}
            for key in sorted(named):
                if named[key][1] == "tool" and before[key] not in heads:
                    return DeleteOutcome(0, orphan=named[key][0])
            # A head and the run of tool results after it: up to the next entry that is
            # not a tool result, or to the end of the session.
            ranges = _merged((key, _end_or_last(after[key])) for key in heads)
            deleted = 0
            for batch in _chunks(ranges, _RANGES_PER_STATEMENT):
                params: dict[str, Any] = {"sid": session_id}
                for i, (start, end) in enumerate(batch):
                    params[f"a_{i}"], params[f"b_{i}"] = start, end
                result = await conn.execute(st.delete_ranges(len(batch)), params)
                deleted += int(result.rowcount)
            if deleted:
                await _edited(conn, st, session_id, stored - deleted)
            return DeleteOutcome(deleted)

        return await self._write(work, reads_first=True)

    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        if not _storable(message_id):
            return None

        async def work(conn: AsyncConnection, st: Statements) -> int | None:
            stored = await _lock_live(conn, st, session_id)
            if stored is None:
                return None
            found = await conn.execute(st.named, {"sid": session_id, "ids": [message_id]})
            key = found.scalar()
            if key is None:
                return None
            head = (await _neighbours(conn, st, session_id, [key]))[0][key]
            if head is None:
                return 0  # only the message's tool results follow it
            result = await conn.execute(st.cut_from, {"sid": session_id, "head": head})
            deleted = int(result.rowcount)
            if deleted:
                await _edited(conn, st, session_id, stored - deleted)
            return deleted

        return await self._write(work, reads_first=True)

    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        st = await self._ready()
        async with self._read_lock, self._engine.connect() as conn:
            now = float((await conn.execute(st.clock)).scalar_one())
        cutoff = now - older_than.total_seconds()
        if not dry_run:
            # Stamped after the cutoff was read, so they are not pruned this time.
            await self._stamp_unrecorded(st)
        total = 0
        last: Any = None
        while True:
            if dry_run and last is not None:
                params = {"cutoff": cutoff, "after_t": last[1], "after_id": last[0]}
                rows = await self._rows(st.stale_after, params)
            else:
                rows = await self._rows(st.stale, {"cutoff": cutoff})
            if dry_run:
                total += len(rows)
            elif rows:
                total += await self._write(
                    _pruning([row[0] for row in rows], cutoff), reads_first=True
                )
            if len(rows) < BATCH_SIZE:
                return total
            last = rows[-1]

    async def _stamp_unrecorded(self, st: Statements) -> None:
        """Give sessions stored by schema version 1 an `updated_at` of now, a batch at a time."""
        while True:
            ids = await self._scalars(st.unrecorded, {})
            if ids:
                await self._write(functools.partial(_stamp, ids))
            if len(ids) < BATCH_SIZE:
                return

    async def _purge_expired(self) -> int:
        async def work(conn: AsyncConnection, st: Statements) -> int:
            ids = list((await conn.execute(st.expired_ids)).scalars())
            if ids:
                await conn.execute(st.purge_many, {"ids": ids})
                await conn.execute(st.delete_expired, {"ids": ids})
            return len(ids)

        total = 0
        while True:
            purged = await self._write(work, reads_first=True)
            total += purged
            if purged < BATCH_SIZE:
                return total

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        rows = [
            {"session_id": session_id, "message_id": r.id, "role": r.role, "data": r.data}
            for r in records
        ]

        async def work(conn: AsyncConnection, st: Statements) -> bool:
            params = {"sid": session_id, "n": 0, "ttl": None}
            stored, expired = await self._touch(conn, st, params)
            last = (await conn.execute(st.last_id, params)).scalar()
            if last != expected_last_id:
                if stored == 0 and not expired:
                    await conn.execute(st.delete_session, params)  # made by the touch
                return False
            await conn.execute(st.purge, params)
            inserted = await _insert(conn, st, rows) if rows else 0
            if inserted:
                await conn.execute(st.reset_count, {**params, "count": inserted})
            else:
                await conn.execute(st.delete_session, params)
            return True

        return await self._write(work)

    async def _aclose(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()

    # -- plumbing -----------------------------------------------------------------------------

    async def _ready(self) -> Statements:
        if self._statements is None:
            async with self._setup_lock:
                if self._statements is None:
                    self._statements = await self._setup()
        return self._statements

    async def _setup(self) -> Statements:
        """Check the tables without writing; create or upgrade them only when they need it
        (and `create_tables` allows), so a read-only role can use current tables."""
        tables = self._tables
        async with self._read_lock, self._engine.connect() as conn:
            # SQLite also looks for its system-message index, which older tables lack.
            full = self._create_tables and self._sqlite
            state = await conn.run_sync(read_schema_state, tables, full=full)
            st = build_statements(tables, conn.dialect)
        where = f"table {tables.schema.name!r} at {self._url}"
        if state.version is not None and state.version > SCHEMA_VERSION:
            raise SchemaMismatch(state.version, SCHEMA_VERSION, where)
        if state.version == SCHEMA_VERSION and state.complete:
            return st
        if self._create_tables:
            await self._upgrade()
        else:
            self._check_migrated(state, where)
        return st

    async def _upgrade(self) -> None:
        attempt = 1
        while True:
            connected = False
            try:
                async with self._transaction(reads_first=True) as conn:
                    connected = True
                    await conn.run_sync(upgrade_schema, self._tables)
                    return
            except exc.DBAPIError as error:
                # Another process may be creating or upgrading the same tables; look again.
                if not connected or attempt == _ATTEMPTS or _is_denied(error):
                    raise
            await asyncio.sleep(0.05 * attempt)
            attempt += 1

    def _check_migrated(self, state: SchemaState, where: str) -> None:
        """With `create_tables=False`: accept tables a migration made, or say what to do."""
        tables = self._tables
        if not state.has_schema:
            raise ConfigurationError(
                f"table {tables.schema.name!r} not found at {self._url}; create the tables "
                "with create_tables=True or migrate them in with build_metadata()"
            )
        if state.version is not None:
            raise SchemaMismatch(
                state.version,
                SCHEMA_VERSION,
                f"{where} (open it once with create_tables=True to upgrade it in place, or "
                f"add the nullable DOUBLE columns created_at and updated_at to "
                f"{tables.sessions.name!r} and the index {tables.updated_index.name!r} on "
                f"(updated_at, session_id) as build_metadata() has them, then set the "
                f"version row to {SCHEMA_VERSION})",
            )
        if state.missing_tables or state.missing_columns:
            raise ConfigurationError(
                f"the tables under prefix {self.table_prefix!r} at {self._url} lack "
                f"{', '.join(state.missing_tables + state.missing_columns)} of schema version "
                f"{SCHEMA_VERSION}; migrate them from build_metadata() or use create_tables=True"
            )

    @contextlib.asynccontextmanager
    async def _transaction(self, *, reads_first: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction; pass `reads_first` when its first statement is not a write."""
        async with self._write_lock, self._engine.begin() as conn:
            if self._send_begin or (reads_first and self._sqlite):
                # Take SQLite's write lock up front: a transaction that reads and then
                # writes fails with SQLITE_BUSY instead of waiting its turn.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    async def _write(
        self,
        work: Callable[[AsyncConnection, Statements], Awaitable[T]],
        *,
        reads_first: bool = False,
    ) -> T:
        """Run `work` in one transaction, retrying it when the database aborted it to break
        a deadlock or a serialization conflict."""
        st = await self._ready()
        attempt = 1
        while True:
            try:
                async with self._transaction(reads_first=reads_first) as conn:
                    return await work(conn, st)
            except exc.DBAPIError as error:
                if attempt == _ATTEMPTS or not _is_transient(error):
                    raise
            await asyncio.sleep(random.uniform(0.0, 0.01 * 2**attempt))
            attempt += 1

    async def _scalars(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        async with self._read_lock, self._engine.connect() as conn:
            return list((await conn.execute(statement, params)).scalars())

    async def _rows(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        async with self._read_lock, self._engine.connect() as conn:
            return list((await conn.execute(statement, params)).all())

    async def _touch(
        self, conn: AsyncConnection, st: Statements, params: dict[str, Any]
    ) -> tuple[int, bool]:
        """Upsert and lock the session row; return its count and whether it had expired."""
        result = await conn.execute(st.touch, params)
        if not st.touch_returns:
            result = await conn.execute(st.session_state, params)
        count, expired = result.one()
        return int(count), bool(expired)

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        try:
            yield
        except MemweaveError:
            raise
        except exc.DBAPIError as error:
            reason = _reason(error.orig if error.orig is not None else error)
            if _is_denied(error):
                raise ConfigurationError(
                    f"the database user of {self._url} may not do this (a role that may only "
                    f"SELECT can list and read, not write): {reason}"
                ) from error
            if (
                isinstance(error, exc.ProgrammingError)
                or "no such table" in reason
                or ("no such index" in reason)
            ):
                raise ConfigurationError(
                    f"the tables under prefix {self.table_prefix!r} are missing or differ from "
                    f"schema version {SCHEMA_VERSION}: {reason}"
                ) from error
            raise BackendUnavailable(reason, url=self._url) from error
        except (exc.SQLAlchemyError, OSError) as error:
            raise BackendUnavailable(_reason(error), url=self._url) from error


async def _insert(conn: AsyncConnection, st: Statements, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose ids the session lacks; return how many were inserted."""
    if st.insert_many is not None and len(rows) > 1:
        inserted = 0
        for chunk in _statement_chunks(rows):
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
_CHUNK_BYTES = 2 << 20  # hex doubles it on the wire; MariaDB's max_allowed_packet is 16 MiB


def _statement_chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split a batch into runs of at most `_CHUNK_ROWS` rows and about `_CHUNK_BYTES` of data
    (a single larger row is a run of its own), each sent as one statement."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        if chunk and (len(chunk) == _CHUNK_ROWS or size + len(row["data"]) > _CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += len(row["data"])
    if chunk:
        yield chunk


async def _trim(
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


class _NothingStored(Exception):
    """Rolls back an append whose batch held only stored ids."""


async def _lock_live(conn: AsyncConnection, st: Statements, session_id: str) -> int | None:
    """Lock the session row; return its message count, or None when unknown or expired."""
    row = (await conn.execute(st.lock_session, {"sid": session_id})).one_or_none()
    if row is None or row.expired:
        return None
    return int(row.message_count)


async def _stamp(ids: list[str], conn: AsyncConnection, st: Statements) -> None:
    await conn.execute(st.stamp, {"ids": ids})


async def _neighbours(
    conn: AsyncConnection, st: Statements, session_id: str, keys: list[int]
) -> tuple[dict[int, int | None], dict[int, int | None]]:
    """For each key, the next and the previous key of an entry that is not a tool result."""
    after: dict[int, int | None] = {}
    before: dict[int, int | None] = {}
    for chunk in _chunks(keys, _RANGES_PER_STATEMENT):
        params: dict[str, Any] = {"sid": session_id}
        params.update((f"k_{i}", key) for i, key in enumerate(chunk))
        row = (await conn.execute(st.neighbours(len(chunk)), params)).one()
        for i, key in enumerate(chunk):
            after[key], before[key] = row[2 * i], row[2 * i + 1]
    return after, before


async def _edited(conn: AsyncConnection, st: Statements, session_id: str, left: int) -> None:
    """Record a deletion: the new count and `updated_at`, or drop a session left empty."""
    params = {"sid": session_id, "count": left}
    await conn.execute(st.edited if left > 0 else st.delete_session, params)


def _pruning(
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


def _merged(ranges: Iterator[tuple[int, int]] | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted half-open key ranges with the touching or overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _end_or_last(key: int | None) -> int:
    return _NO_END if key is None else key


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _storable(text: str) -> bool:
    """Whether `text` could be a stored id (else no row holds it, and drivers may refuse it)."""
    return 0 < len(text) <= 256 and _UNSTORABLE.search(text) is None


def _above(after: str) -> tuple[str, int]:
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


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(float(seconds), UTC)


def _successor(prefix: str) -> str | None:
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


def _is_denied(error: exc.DBAPIError) -> bool:
    """The database refused a statement for lack of a privilege (or a read-only file)."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "42501":
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    if args and args[0] in (1142, 1143, 1044, 1227):  # MySQL/MariaDB access denied
        return True
    return "readonly database" in str(orig)


def _is_transient(error: exc.DBAPIError) -> bool:
    """A deadlock or serialization failure, after which the whole transaction may be rerun."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == 1213  # MySQL/MariaDB ER_LOCK_DEADLOCK


def _reason(error: BaseException) -> str:
    # The driver's own message: SQLAlchemy's also quotes the statement and its parameters,
    # which may be a megabyte of message text.
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 500 else text[:497] + "..."


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # sqlite3 then starts every transaction with BEGIN IMMEDIATE in the same call as its
    # first write, saving a round trip to the driver's thread per write.
    dbapi_connection.isolation_level = "IMMEDIATE"


def _aiomysql_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    # Replaces the pool's unconditional ROLLBACK when a connection is returned (a round trip
    # per call): aiomysql knows from the server's last reply whether a transaction is open.
    if state.transaction_was_reset or state.terminate_only or not state.asyncio_safe:
        return
    if dbapi_connection.driver_connection.get_transaction_status():
        dbapi_connection.rollback()


def resolve_engine(url: str | None, engine: AsyncEngine | None) -> tuple[AsyncEngine, bool]:
    """The engine for a store given `url` or `engine` (neither: `DEFAULT_URL`), and whether
    it was built here, so the store disposes of it when closed.

    Raises:
        ConfigurationError: Both were given, `engine` is not an `AsyncEngine`, or `url`
            cannot be used (bad URL, sync-only driver).
        MissingDependency: The URL's async driver is not installed.
    """
    if engine is not None and url is not None:
        raise ConfigurationError("pass either url or engine, not both")
    if engine is None:
        return _create_engine(url if url is not None else DEFAULT_URL), True
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(f"engine must be a SQLAlchemy AsyncEngine, got {engine!r}")
    return engine, False


def _create_engine(url: str) -> AsyncEngine:
    """Build an engine for `url`, filling in the async driver and our connection settings."""
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str, got {url!r}")
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ConfigurationError(f"not a database URL: {mask_url(url)!r}") from None
    backend = parsed.get_backend_name()
    if "+" not in parsed.drivername and backend in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    driver = parsed.get_driver_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT}
    elif backend in ("mysql", "mariadb"):
        options.update(isolation_level="READ COMMITTED", pool_recycle=3600)
        if driver == "aiomysql":
            options["pool_reset_on_return"] = None  # see `_aiomysql_reset`
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = create_async_engine(parsed, **options)
    except ImportError as error:
        if driver in _EXTRAS:
            raise MissingDependency(driver, _EXTRAS[driver]) from error
        raise ConfigurationError(f"the driver for {shown!r} is not installed: {error}") from error
    except exc.SQLAlchemyError as error:
        raise ConfigurationError(f"cannot use {shown!r} with an async engine: {error}") from error
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    elif driver == "aiomysql":
        event.listen(engine.sync_engine, "reset", _aiomysql_reset)
    return engine
