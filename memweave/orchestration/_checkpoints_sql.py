"""`SQLCheckpointStore`: workflow checkpoints in SQLite, PostgreSQL or MariaDB/MySQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    exc,
    insert,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from memweave._loops import is_loop_error
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    EventLoopMismatch,
    MemweaveError,
)
from memweave.orchestration.checkpoints import Checkpoint, CheckpointStore
from memweave.providers._sql_engine import Engines
from memweave.providers._sql_schema import MySQLBlob

__all__ = ["SQLCheckpointStore", "checkpoint_table"]

_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _MediumBlob(MySQLBlob):
    """`MEDIUMBLOB` (the column checkpoint tables have always had) whose values travel as hex,
    as `MySQLBlob`'s do; the bind works whatever BLOB type an existing table has."""

    impl = mysql.MEDIUMBLOB  # type: ignore[assignment]  # MySQLBlob's impl is a LONGBLOB
    cache_ok = True


def checkpoint_table(table_prefix: str = "memweave_", metadata: MetaData | None = None) -> Table:
    """Return the `<prefix>checkpoints` table, for your own migrations.

    One row per checkpoint: a database-generated `seq` orders a thread, `thread` is
    `thread_key(workflow, session_id)` (so ids compare exactly on every database), and `data`
    is the checkpoint's JSON. `workflow` and `session_id` are kept for inspection only.

    Raises:
        ConfigurationError: The prefix is not 1-32 ASCII letters, digits or underscores.
    """
    if (
        not isinstance(table_prefix, str)
        or not 0 < len(table_prefix) <= 32
        or not set(table_prefix) <= _PREFIX_CHARS
        or table_prefix[0].isdigit()
    ):
        raise ConfigurationError(
            f"table_prefix must be 1-32 ASCII letters, digits or underscores, got {table_prefix!r}"
        )
    name = f"{table_prefix}checkpoints"
    table = Table(
        name,
        metadata if metadata is not None else MetaData(),
        # INTEGER PRIMARY KEY on SQLite is the rowid, so it grows with every insert.
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("thread", String(32), nullable=False),
        Column("checkpoint_id", String(64), nullable=False),
        Column("workflow", String(255), nullable=False),
        Column("session_id", String(256), nullable=False),
        Column("created_at", Double(), nullable=False),
        Column("data", LargeBinary().with_variant(_MediumBlob(), "mysql", "mariadb")),
        UniqueConstraint("thread", "checkpoint_id", name=f"{name}_thread_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    Index(f"{name}_thread_seq", table.c.thread, table.c.seq)
    return table


class SQLCheckpointStore(CheckpointStore):
    """SQL based, process-safe checkpoint store: one row per checkpoint, one transaction per save.

    A save is an insert-or-ignore on `(thread, checkpoint_id)` (so saving again is a no-op)
    followed, with `max_checkpoints`, by deleting the thread's older rows, in one transaction.
    Reads are one indexed query on `(thread, seq)`. The table is created on first use.

    Event loops: as `SQLChatHistoryProvider`. Built from a URL, the store works in any event
    loop, with an engine per loop disposed of when its loop shuts down; an `engine` you pass
    in (or an in-memory SQLite database) serves the loop that first used the store, and a call
    from another loop raises `EventLoopMismatch`.

    Args:
        url: A SQLAlchemy URL (`sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...`); the same settings as `SQLChatHistoryProvider` are applied.
            Defaults to `sqlite+aiosqlite:///memweave.db` when no `engine` is given.
        engine: An `AsyncEngine` to use instead of a URL; the caller keeps ownership.
        table_prefix: First part of the table name.
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).

    Example:
        ```python
        store = SQLCheckpointStore("sqlite+aiosqlite:///chat.db")
        workflow = HandoffBuilder("support", agents, history=history).with_checkpointing(store)
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        table_prefix: str = "memweave_",
        max_checkpoints: int | None = None,
    ) -> None:
        super().__init__(max_checkpoints=max_checkpoints)
        self._table = checkpoint_table(table_prefix)
        # Per event loop: the engine and the lock queueing SQLite's writers.
        self._engines = Engines(url, engine, owner=type(self).__name__)
        self._url = self._engines.url
        self._ready = False

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine this store runs on in the running event loop (outside any
        loop, the one it was built with)."""
        return self._engines.current()

    async def _setup(self) -> None:
        if self._ready:
            return
        link = self._engines.get()
        async with link.setup_lock:
            if self._ready:
                return
            for attempt in range(1, 6):
                try:
                    async with link.write_lock, link.engine.begin() as conn:
                        await conn.run_sync(self._table.metadata.create_all)
                    break
                except exc.DBAPIError:
                    # Another process may be creating the same table right now; look again.
                    if attempt == 5:
                        raise
                    await asyncio.sleep(0.05 * attempt)
            self._ready = True

    def _insert(self) -> Any:
        name = self._engines.dialect_name
        if name == "sqlite":
            return sqlite.insert(self._table).on_conflict_do_nothing()
        if name == "postgresql":
            return postgresql.insert(self._table).on_conflict_do_nothing()
        return insert(self._table).prefix_with("IGNORE")

    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        await self._setup()
        t = self._table
        row = {
            "thread": thread,
            "checkpoint_id": checkpoint.id,
            "workflow": checkpoint.workflow[:255],
            "session_id": checkpoint.session_id,
            "created_at": checkpoint.created_at.timestamp(),
            "data": data,
        }
        link = self._engines.get()
        async with link.write_lock, link.engine.begin() as conn:
            await conn.execute(self._insert(), row)
            if max_checkpoints is not None:
                cut = (
                    await conn.execute(
                        select(t.c.seq)
                        .where(t.c.thread == thread)
                        .order_by(t.c.seq.desc())
                        .offset(max_checkpoints)
                        .limit(1)
                    )
                ).scalar()
                if cut is not None:
                    await conn.execute(delete(t).where(t.c.thread == thread, t.c.seq <= cut))

    async def _get(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        await self._setup()
        t = self._table
        query = select(t.c.data).where(t.c.thread == thread)
        if checkpoint_id is None:
            query = query.order_by(t.c.seq.desc()).limit(1)
        else:
            query = query.where(t.c.checkpoint_id == checkpoint_id)
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return bytes(value) if value is not None else None

    async def _list(self, thread: str, limit: int | None) -> list[bytes]:
        await self._setup()
        t = self._table
        query = select(t.c.data).where(t.c.thread == thread).order_by(t.c.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            return [bytes(value) for value in (await conn.execute(query)).scalars()]

    async def _delete(self, thread: str) -> None:
        await self._setup()
        link = self._engines.get()
        async with link.write_lock, link.engine.begin() as conn:
            await conn.execute(delete(self._table).where(self._table.c.thread == thread))

    async def _aclose(self) -> None:
        await self._engines.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        try:
            yield
        except MemweaveError:
            raise
        except exc.DBAPIError as error:
            orig = error.orig if error.orig is not None else error
            raise BackendUnavailable(f"{type(orig).__name__}: {orig}", url=self._url) from error
        except (exc.SQLAlchemyError, OSError) as error:
            raise BackendUnavailable(f"{type(error).__name__}: {error}", url=self._url) from error
        except RuntimeError as error:
            if is_loop_error(error):
                # An engine passed in after the caller used it in another loop.
                raise EventLoopMismatch(type(self).__name__, self._engines.bound_to) from error
            raise
