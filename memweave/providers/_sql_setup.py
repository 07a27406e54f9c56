"""Setting up a SQL store's tables on first use: checking them without writing, creating or
upgrading them when they need it (and the store allows), and reading the server's limit on
one entry."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_incrementing

from memweave.errors import ConfigurationError, SchemaMismatch
from memweave.providers._sql_engine import Engines, check_server
from memweave.providers._sql_errors import is_conflict, is_denied
from memweave.providers._sql_schema import (
    SCHEMA_VERSION,
    SchemaState,
    Statements,
    Tables,
    build_statements,
    read_schema_state,
    upgrade_schema,
)

__all__ = ["ATTEMPTS", "Setup", "set_up"]

ATTEMPTS = 5
"""Tries of a transaction the database aborted to break a deadlock (and of schema setup
racing other processes' DDL)."""
_SETUP_WAIT = wait_incrementing(start=0.05, increment=0.05)

Transaction = Callable[..., AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True, slots=True)
class Setup:
    """What a store learns on setup."""

    statements: Statements
    """The prebuilt statements for the tables, in the database's dialect."""
    record_limit: int
    """The most bytes one stored entry may take there (see `memweave.providers._limits`)."""


async def set_up(
    engines: Engines,
    tables: Tables,
    *,
    table_prefix: str,
    create: bool,
    transaction: Transaction,
) -> Setup:
    """Check the tables without writing; create or upgrade them only when they need it (and
    `create` allows), so a read-only role can use current tables.

    `transaction(reads_first=True)` opens the store's write transaction, for the upgrade.

    Raises:
        SchemaMismatch: The tables are of a newer schema version, or (without `create`) of
            an older one.
        ConfigurationError: Without `create`, tables or columns are missing; or the server
            is unfit (see `check_server`).
    """

    async def inspect() -> tuple[SchemaState, Setup]:
        link = engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            # SQLite and MariaDB also look for their system-message index, which older
            # tables lack.
            full = create and conn.dialect.name != "postgresql"
            state = await conn.run_sync(read_schema_state, tables, full=full)
            limit = await conn.run_sync(check_server)
            return state, Setup(build_statements(tables, conn.dialect), limit)

    # MariaDB refuses to inspect a table while another session runs DDL on it.
    inspected: tuple[SchemaState, Setup] = await AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=_SETUP_WAIT,
        retry=retry_if_exception(is_conflict),
        reraise=True,
    )(inspect)
    state, setup = inspected
    where = f"table {tables.schema.name!r} at {engines.url}"
    if state.version is not None and state.version > SCHEMA_VERSION:
        raise SchemaMismatch(state.version, SCHEMA_VERSION, where)
    if state.version == SCHEMA_VERSION and state.complete:
        return setup
    if create:
        await _upgrade(tables, transaction)
    else:
        _check_migrated(state, tables, where, url=engines.url, table_prefix=table_prefix)
    return setup


async def _upgrade(tables: Tables, transaction: Transaction) -> None:
    connected = False

    async def upgrade() -> None:
        nonlocal connected
        connected = False
        async with transaction(reads_first=True) as conn:
            connected = True
            await conn.run_sync(upgrade_schema, tables)

    def racing(error: BaseException) -> bool:
        # Another process may be creating or upgrading the same tables; look again.
        return connected and isinstance(error, exc.DBAPIError) and not is_denied(error)

    await AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=_SETUP_WAIT,
        retry=retry_if_exception(racing),
        reraise=True,
    )(upgrade)


def _check_migrated(
    state: SchemaState, tables: Tables, where: str, *, url: str, table_prefix: str
) -> None:
    """With `create_tables=False`: accept tables a migration made, or say what to do."""
    if not state.has_schema:
        raise ConfigurationError(
            f"table {tables.schema.name!r} not found at {url}; create the tables "
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
            f"the tables under prefix {table_prefix!r} at {url} lack "
            f"{', '.join(state.missing_tables + state.missing_columns)} of schema version "
            f"{SCHEMA_VERSION}; migrate them from build_metadata() or use create_tables=True"
        )
