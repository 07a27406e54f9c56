"""Building the `AsyncEngine` of a SQL store from a URL, with memweave's connection settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from memweave._urls import mask_url
from memweave.errors import ConfigurationError, MissingDependency

__all__ = ["DEFAULT_URL", "resolve_engine"]

DEFAULT_URL = "sqlite+aiosqlite:///memweave.db"
"""Where a provider built with neither `url` nor `engine` stores its histories."""

# Async driver used when a URL names only the database ("postgresql://...").
_DEFAULT_DRIVERS = {
    "sqlite": "aiosqlite",
    "postgresql": "asyncpg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
}
_EXTRAS = {"asyncpg": "postgres", "aiomysql": "mysql", "asyncmy": "mysql"}
_SQLITE_BUSY_TIMEOUT = 30.0


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
