"""Building the `AsyncEngine`s of a SQL store from a URL, with memweave's connection settings,
one per event loop (`Engines`)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from memweave._loops import PerLoop
from memweave._urls import mask_url
from memweave.errors import ConfigurationError, MissingDependency
from memweave.providers._home import default_sql_url
from memweave.providers._limits import mysql_limit, sql_limit
from memweave.providers._resilience import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_options

__all__ = [
    "Engines",
    "LoopEngine",
    "check_server",
    "driver_options",
    "resolve_engine",
    "statement_limit",
]

# Async driver used when a URL names only the database ("postgresql://...").
_DEFAULT_DRIVERS = {
    "sqlite": "aiosqlite",
    "postgresql": "asyncpg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
}
_EXTRAS = {"asyncpg": "postgres", "aiomysql": "mysql", "asyncmy": "mysql"}
_SQLITE_BUSY_TIMEOUT = 30.0

_AIOMYSQL_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()
"""aiomysql connections our engines opened (see `Engines._abandon`)."""


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


def _aiomysql_opened(dbapi_connection: Any, _record: Any) -> None:
    _AIOMYSQL_CONNECTIONS.add(dbapi_connection.driver_connection)


_MYSQL_CHARSET = "utf8mb4"


def _with_utf8mb4(parsed: URL) -> URL:
    """The MariaDB/MySQL URL talking utf8mb4, the only client character set that holds all
    of Unicode: set when the URL names none.

    Raises:
        ConfigurationError: The URL names another character set. With `utf8` (3-byte
            utf8mb3) or `latin1`, the server would store `?` for what the set lacks, so
            `id-😀` and `id-😁` would become one id, and the second message be dropped.
    """
    named = parsed.query.get("charset")
    if named is None:
        return parsed.update_query_dict({"charset": _MYSQL_CHARSET})
    for charset in (named,) if isinstance(named, str) else named:
        if charset.lower() != _MYSQL_CHARSET:
            shown = parsed.render_as_string(hide_password=True)
            raise ConfigurationError(
                f"{shown!r} asks for charset={charset}, which cannot hold every Unicode "
                "character (MariaDB/MySQL would store '?' for the rest, merging distinct "
                f"ids); remove charset= from the URL, or use charset={_MYSQL_CHARSET}"
            )
    return parsed


def check_server(conn: Connection) -> int:
    """Check the database behind `conn` for what a store needs, and return the most bytes one
    stored entry may take there (see `memweave.providers._limits`).

    Run once, on setup, with `AsyncConnection.run_sync`. On MariaDB/MySQL it reads the
    connection's character sets (an engine passed in may talk another than the utf8mb4 a
    URL gets, through `connect_args` or `init_command`) and `max_allowed_packet`.

    Raises:
        ConfigurationError: A MariaDB/MySQL connection does not talk utf8mb4.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return sql_limit(conn)
    row = conn.exec_driver_sql(
        "SELECT @@character_set_client, @@character_set_connection, @@character_set_results, "
        "@@max_allowed_packet"
    ).one()
    wrong = [name for name in row[:3] if name is not None and name.lower() != _MYSQL_CHARSET]
    if wrong:
        raise ConfigurationError(
            f"the MariaDB/MySQL connection talks {wrong[0]}, which cannot hold every Unicode "
            "character (the server would store '?' for the rest, merging distinct ids); "
            f"connect with charset={_MYSQL_CHARSET} (a URL without charset= gets it)"
        )
    return mysql_limit(int(row[3]))


def resolve_engine(
    url: str | None, engine: AsyncEngine | None, *, timeout: float | None = DEFAULT_TIMEOUT
) -> tuple[AsyncEngine, bool]:
    """The engine for a store given `url` or `engine` (the store's `client`; neither:
    `default_sql_url()`, a SQLite file in memweave's data directory), and whether it was
    built here, so the store disposes of it when closed.

    An engine built here gets the driver's own time limits from `timeout` (see
    `driver_options`); a `?timeout=` in the URL replaces it.

    Raises:
        ConfigurationError: Both were given, `engine` is not an `AsyncEngine`, or `url`
            cannot be used (bad URL, sync-only driver).
        MissingDependency: The URL's async driver is not installed.
    """
    if engine is not None and url is not None:
        raise ConfigurationError("pass either url or client (an AsyncEngine), not both")
    if engine is None:
        return _create_engine(url if url is not None else default_sql_url("a store"), timeout), True
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(f"client must be a SQLAlchemy AsyncEngine, got {engine!r}")
    return engine, False


def _create_engine(url: str, timeout: float | None) -> AsyncEngine:
    """Build an engine for `url`, filling in the async driver and our connection settings."""
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str, got {url!r}")
    url, timeout, _ = resolve_options(url, timeout, DEFAULT_RETRIES)
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ConfigurationError(f"not a database URL: {mask_url(url)!r}") from None
    backend = parsed.get_backend_name()
    if "+" not in parsed.drivername and backend in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    driver = parsed.get_driver_name()
    options = driver_options(backend, driver, timeout, set(parsed.query))
    if backend in ("mysql", "mariadb"):
        options.update(isolation_level="READ COMMITTED", pool_recycle=3600)
        if driver == "aiomysql":
            options["pool_reset_on_return"] = None  # see `_aiomysql_reset`
        parsed = _with_utf8mb4(parsed)
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
        event.listen(engine.sync_engine, "connect", _aiomysql_opened)
    return engine


def driver_options(
    backend: str, driver: str, timeout: float | None, in_url: set[str]
) -> dict[str, Any]:
    """`create_async_engine` options holding the driver's own time limits to `timeout`, so a
    stuck connection or statement fails at the driver too, which then leaves the connection
    usable or discards it: SQLite's busy timeout (30 s with no limit), asyncpg's connect and
    command timeouts, aiomysql's connect timeout, and the pool's wait for a connection. A
    driver parameter already in the URL's query is left as it is."""
    connect: dict[str, Any] = {}
    options: dict[str, Any] = {"connect_args": connect}
    if backend == "sqlite":
        connect["timeout"] = timeout if timeout is not None else _SQLITE_BUSY_TIMEOUT
        return options
    if timeout is None:
        return options
    options["pool_timeout"] = timeout
    if driver == "asyncpg":
        connect["timeout"] = timeout
        if "command_timeout" not in in_url:
            connect["command_timeout"] = timeout
    elif driver in ("aiomysql", "asyncmy") and "connect_timeout" not in in_url:
        connect["connect_timeout"] = timeout
    return options


def statement_limit(url: str | None, timeout: float | None) -> float:
    """The seconds after which a driver gives up on a statement, for timeout errors: a
    `command_timeout` in the URL's query, else `timeout`, else the drivers' default of 30 s
    (SQLite's busy timeout, the pool's wait)."""
    fallback = timeout if timeout is not None else _SQLITE_BUSY_TIMEOUT
    if url is None:
        return fallback
    try:
        value = make_url(url).query.get("command_timeout")
        return float(value) if isinstance(value, str) else fallback
    except (exc.ArgumentError, ValueError):
        return fallback


@dataclass(slots=True, eq=False)
class LoopEngine:
    """What a SQL store uses in one event loop: an engine and the locks that queue its calls."""

    engine: AsyncEngine
    write_lock: AbstractAsyncContextManager[Any]
    """SQLite's: one writer per file, so the store queues its own writers (beats busy-polling)."""
    read_lock: AbstractAsyncContextManager[Any]
    """An in-memory SQLite database is one connection, so reads queue behind writes too."""
    setup_lock: asyncio.Lock


class Engines:
    """The engines of one SQL store: one per event loop when it was given a URL, each built
    with the same settings and disposed of (on its loop) when that loop shuts down; else the
    engine given, or the one connection of an in-memory SQLite database, serving the loop that
    first used it only (see `memweave._loops.PerLoop`).

    Args:
        url: The store's URL, or None: with no `engine` either, a SQLite file in memweave's
            data directory (see `memweave.providers._home.default_sql_url`).
        engine: The caller's engine (the store's `client`), or None.
        owner: The store's class name, for errors.
        timeout: The store's `timeout`, for the drivers' own limits (see `driver_options`).

    Raises:
        ConfigurationError: As `resolve_engine`.
        MissingDependency: As `resolve_engine`.
    """

    def __init__(
        self,
        url: str | None,
        engine: AsyncEngine | None,
        *,
        owner: str,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if url is None and engine is None:
            url = default_sql_url(owner)
        self.template, self.owned = resolve_engine(url, engine, timeout=timeout)
        """The engine built (or given) first; the first loop's."""
        self._source = url
        self._timeout = timeout
        self.url = self.template.url.render_as_string(hide_password=True)
        """The URL, without its password."""
        self.dialect_name = self.template.dialect.name
        self.sqlite = self.dialect_name == "sqlite"
        self.in_memory = self.sqlite and self.template.url.database in (None, "", ":memory:")
        # Engines of loops that shut down: disposed of, so reusable in any loop, and they keep
        # what the dialect learned on first connect.
        self._spares = [self.template]
        self._closed = False
        self.bound_to = "its engine"
        """What ties the store to one event loop, when something does (for errors)."""
        if not self.owned:
            self.bound_to = "the engine passed in"
        elif self.in_memory:
            self.bound_to = "its in-memory SQLite database"
        if self.owned and not self.in_memory:
            self._loops: PerLoop[LoopEngine] = PerLoop(
                self._make, close=self._dispose, discard=self._abandon
            )
        else:
            close = self._dispose if self.owned else None
            self._loops = PerLoop(self._make, close=close, bound=(owner, self.bound_to))

    def get(self) -> LoopEngine:
        """The running loop's engine and locks.

        Raises:
            EventLoopMismatch: The engine was given (or is an in-memory SQLite database) and
                another loop used it first.
        """
        return self._loops.get()

    def current(self) -> AsyncEngine:
        """The running loop's engine; outside any loop, or when the engine was given or is
        an in-memory database, the one built (or given) first."""
        if not self.owned or self.in_memory or asyncio._get_running_loop() is None:
            return self.template
        return self._loops.get().engine

    @contextlib.asynccontextmanager
    async def transaction(self, *, reads_first: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction on the running loop's engine, under its write lock; pass
        `reads_first` when its first statement is not a write."""
        link = self.get()
        async with link.write_lock, link.engine.begin() as conn:
            # Our own SQLite connections open a write transaction with BEGIN IMMEDIATE by
            # themselves before the first write (see `_sqlite_pragmas`); others need it sent.
            # A transaction that reads and then writes takes SQLite's write lock up front:
            # else it fails with SQLITE_BUSY instead of waiting its turn.
            if self.sqlite and (reads_first or not self.owned):
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    async def aclose(self) -> None:
        """Dispose of the engines built here (a given one is left as it is)."""
        self._closed = True
        await self._loops.aclose()

    def _make(self) -> LoopEngine:
        if not self.owned or self.in_memory:
            engine = self.template
        else:
            try:
                engine = self._spares.pop()
            except IndexError:
                assert self._source is not None  # an engine built here came from a URL
                engine = _create_engine(self._source, self._timeout)
        write: AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self.sqlite else contextlib.nullcontext()
        )
        read = write if self.in_memory else contextlib.nullcontext()
        return LoopEngine(engine, write, read, asyncio.Lock())

    async def _dispose(self, link: LoopEngine) -> None:
        await link.engine.dispose()
        if not self._closed and not self.in_memory:
            self._spares.append(link.engine)

    @staticmethod
    def _abandon(link: LoopEngine) -> None:
        """Drop the engine of a loop closed without shutting down: its connections can only
        be left to the garbage collector, and their sockets are closed when collected."""
        # aiomysql's finalizer would then fail with "Event loop is closed" (asyncpg's and
        # redis-py's check for that). Closing the connection here fails the same way, but
        # marks its transport closed first, which keeps that finalizer quiet.
        for connection in list(_AIOMYSQL_CONNECTIONS):
            if connection.loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    connection.close()
