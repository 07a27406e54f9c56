"""`SQLChatHistoryProvider`: histories in SQLite, PostgreSQL or MariaDB/MySQL via SQLAlchemy."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from sqlalchemy import event, exc, inspect
from sqlalchemy.engine import Connection, make_url
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
    PURGE_BATCH,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    Statements,
    build_metadata,
    build_statements,
    tables_for,
)
from memweave.providers.base import ChatHistoryProvider, ReduceOn, StoredRecord
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


class SQLChatHistoryProvider(ChatHistoryProvider):
    """SQL based, process-safe history store: every call is one transaction.

    Messages live in `<prefix>messages`, one row each, ordered by a database-generated key,
    with a unique `(session_id, message_id)` that the dialect's insert-or-ignore (`ON CONFLICT
    DO NOTHING`, MySQL's `INSERT IGNORE`) turns into idempotent appends. `<prefix>sessions`
    keeps each session's message count and expiry, so `count_messages` and `list_sessions`
    never scan messages. An append upserts the session row (which also serialises writers of
    one session), then inserts the batch; with `max_messages` it trims the oldest rows (and
    tool results left at the head) in the same transaction. `limit=N` is one indexed
    `ORDER BY key DESC LIMIT N`, so neither appends nor recent reads grow with the history.

    Ttl expiry uses the database's clock. An expired session reads as empty at once; its rows
    are deleted when it is written to again, or by `purge_expired()`.

    An engine built from a URL gets SQLite's WAL journal, `synchronous=NORMAL` and a 30 s busy
    timeout (so several processes can share one file), and READ COMMITTED on MariaDB/MySQL.
    An engine you pass in is used as it is and never closed here. Change the tables only
    through a provider, since each write keeps the session's count in step with its rows.
    Ids compare exactly on every database (see `ExactString`), which needs MariaDB 10.2+ or
    MySQL 8.0.17+.

    Args:
        url: A SQLAlchemy URL: `sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...` (the driver may be left out). Defaults to
            `sqlite+aiosqlite:///memweave.db` when no `engine` is given.
        engine: An `AsyncEngine` to use instead of a URL; the caller keeps ownership.
        table_prefix: First part of every table name (ASCII letters, digits, underscores).
        create_tables: Create missing tables on first use. With False they must exist
            already, e.g. from your Alembic migration of `build_metadata(table_prefix)`.
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
        if not records:
            if seconds is not None:
                await self._write(lambda conn, st: conn.execute(st.renew, params))
            return
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
            kept = count
            if max_messages is not None and count > max_messages:
                kept = await _trim(conn, st, session_id, count, max_messages)
            if kept == 0:
                await conn.execute(st.delete_session, params)
            elif expired:
                await conn.execute(st.restart, {**params, "count": kept})
            elif kept != stored:
                await conn.execute(st.set_count, {**params, "count": kept})

        await self._write(work)

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

    async def _list_sessions(self, prefix: str | None) -> list[str]:
        st = await self._ready()
        if prefix is None:
            return await self._scalars(st.list_all, {})
        try:
            validate_session_id(prefix)
        except InvalidSessionId:
            return []  # no stored id can start with it
        upper = _successor(prefix)
        if upper is None:
            return await self._scalars(st.list_from, {"lo": prefix})
        return await self._scalars(st.list_range, {"lo": prefix, "hi": upper})

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

    # -- SQL-only API -------------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete the stored rows of every expired session; return how many sessions went.

        Expired sessions already read as empty; this reclaims their space. Run it from time
        to time (a cron job, a startup hook) when you use `ttl`.

        Raises:
            BackendUnavailable: The database could not be reached.
        """

        async def work(conn: AsyncConnection, st: Statements) -> int:
            ids = list((await conn.execute(st.expired_ids)).scalars())
            if ids:
                await conn.execute(st.purge_many, {"ids": ids})
                await conn.execute(st.delete_expired, {"ids": ids})
            return len(ids)

        total = 0
        with self._map_errors():
            while True:
                purged = await self._write(work, reads_first=True)
                total += purged
                if purged < PURGE_BATCH:
                    return total

    # -- plumbing -----------------------------------------------------------------------------

    async def _ready(self) -> Statements:
        if self._statements is None:
            async with self._setup_lock:
                if self._statements is None:
                    self._statements = await self._setup()
        return self._statements

    async def _setup(self) -> Statements:
        """Create missing tables and check the schema version row (writing it if absent)."""
        attempt = 1
        while True:
            connected = False
            try:
                async with self._transaction(reads_first=True) as conn:
                    connected = True
                    return await self._setup_in(conn)
            except exc.DBAPIError:
                # Another process may be creating the same tables right now; look again.
                if not connected or attempt == _ATTEMPTS:
                    raise
            await asyncio.sleep(0.05 * attempt)
            attempt += 1

    async def _setup_in(self, conn: AsyncConnection) -> Statements:
        tables = self._tables
        if self._create_tables:
            await conn.run_sync(tables.metadata.create_all)
            if conn.dialect.name == "sqlite":  # tables made before the index existed
                await conn.run_sync(tables.sqlite_system_index.create, checkfirst=True)
        elif not await conn.run_sync(_has_table, tables.schema.name):
            raise ConfigurationError(
                f"table {tables.schema.name!r} not found at {self._url}; create the tables "
                "with create_tables=True or migrate them in with build_metadata()"
            )
        st = build_statements(tables, conn.dialect)
        version = {"name": SCHEMA_NAME, "version": SCHEMA_VERSION}
        await conn.execute(st.version_write, version)
        found = (await conn.execute(st.version_read, version)).scalar()
        if found != SCHEMA_VERSION:
            raise SchemaMismatch(found, SCHEMA_VERSION, f"table {tables.schema.name!r}")
        return st

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


def _has_table(connection: Connection, name: str) -> bool:
    return bool(inspect(connection).has_table(name))


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
