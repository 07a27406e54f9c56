"""`SQLDatabase`: how `SQLChatHistoryProvider` reaches its tables: set up once on first use,
write transactions run again when the database certainly did not apply them, and reads."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from memweave.providers._limits import UNLIMITED
from memweave.providers._resilience import retry_after
from memweave.providers._sql_engine import Engines
from memweave.providers._sql_errors import is_conflict, is_lost
from memweave.providers._sql_schema import Statements, Tables
from memweave.providers._sql_setup import ATTEMPTS, set_up

__all__ = ["SQLDatabase", "Work"]

T = TypeVar("T")

Work = Callable[[AsyncConnection, Statements], Awaitable[T]]
"""What runs inside one write transaction, given its connection and the statements."""

_RERUN_WAIT = wait_random_exponential(multiplier=0.01, max=0.5)


class SQLDatabase:
    """One provider's tables behind its engines (one per event loop, see `Engines`).

    Args:
        engines: The provider's engines.
        tables: Its tables.
        table_prefix: The start of their names, for setup's messages.
        create: Create missing tables (and upgrade older ones) on setup.
        retries: The provider's `retries`: with 0, a transaction cut off with its
            connection is not run again.
    """

    def __init__(
        self, engines: Engines, tables: Tables, *, table_prefix: str, create: bool, retries: int
    ) -> None:
        self._engines = engines
        self._tables = tables
        self._table_prefix = table_prefix
        self._create = create
        self._retries = retries
        self._statements: Statements | None = None
        self.record_limit: int = UNLIMITED
        """The database's limit on one entry (see `memweave.providers._limits`), read on
        setup."""

    async def ready(self) -> Statements:
        """The statements of the tables, setting them up on the first call of this loop."""
        if self._statements is None:
            async with self._engines.get().setup_lock:
                if self._statements is None:
                    setup = await set_up(
                        self._engines,
                        self._tables,
                        table_prefix=self._table_prefix,
                        create=self._create,
                        transaction=self.transaction,
                    )
                    self.record_limit = setup.record_limit
                    self._statements = setup.statements
        return self._statements

    def transaction(
        self, *, reads_first: bool = False
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction; pass `reads_first` when its first statement is not a write."""
        return self._engines.transaction(reads_first=reads_first)

    async def write(self, work: Work[T], *, reads_first: bool = False) -> T:
        """Run `work` in one transaction, running it again when the database certainly did
        not apply it: aborted to break a deadlock or a serialization conflict (up to
        `ATTEMPTS` tries), or cut off with its connection before the commit was sent (once
        more, on a new connection, unless `retries=0`)."""
        st = await self.ready()
        committing = False

        async def transact() -> T:
            nonlocal committing
            committing = False
            async with self.transaction(reads_first=reads_first) as conn:
                result = await work(conn, st)
                committing = True  # what fails from here on may have been applied
            return result

        def unapplied(error: BaseException) -> bool:
            return is_conflict(error) or (not committing and is_lost(error))

        try:
            return await transact()
        except (exc.SQLAlchemyError, OSError) as error:
            if not unapplied(error):
                raise
            first = error
        retrying = AsyncRetrying(
            stop=self._rerun_stop,
            wait=_RERUN_WAIT,
            retry=retry_if_exception(unapplied),
            reraise=True,
        )
        return await retry_after(first, transact, retrying)

    def _rerun_stop(self, state: RetryCallState) -> bool:
        """Whether `write` stops after this try: a conflict is rerun up to `ATTEMPTS`
        tries, a dead connection once (not with `retries=0`)."""
        error = state.outcome.exception() if state.outcome is not None else None
        limit = ATTEMPTS if is_conflict(error) else min(self._retries, 1) + 1
        return state.attempt_number >= limit

    async def scalars(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        """The first column of `statement`'s rows, read outside any write transaction."""
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            return list((await conn.execute(statement, params)).scalars())

    async def rows(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        """`statement`'s rows, read outside any write transaction."""
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            return list((await conn.execute(statement, params)).all())
