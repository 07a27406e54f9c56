"""`SQLCheckpointStore`: workflow checkpoints in SQLite, PostgreSQL or MariaDB/MySQL."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

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
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from memweave._deprecation import renamed_argument
from memweave.orchestration.checkpoints import Checkpoint, CheckpointStore
from memweave.providers._namespace import sql_names
from memweave.providers._resilience import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    CallPolicy,
    resolve_options,
)
from memweave.providers._sql_engine import Engines, statement_limit
from memweave.providers._sql_errors import map_sql_errors
from memweave.providers._sql_schema import MySQLBlob

__all__ = ["SQLCheckpointStore", "checkpoint_table"]

_T = TypeVar("_T")


class _MediumBlob(MySQLBlob):
    """`MEDIUMBLOB` (the column checkpoint tables have always had) whose values travel as hex,
    as `MySQLBlob`'s do; the bind works whatever BLOB type an existing table has."""

    impl = mysql.MEDIUMBLOB  # type: ignore[assignment]  # MySQLBlob's impl is a LONGBLOB
    cache_ok = True


def checkpoint_table(
    table_prefix: str | None = None,
    metadata: MetaData | None = None,
    *,
    namespace: str | None = None,
) -> Table:
    """Return the `<namespace>_checkpoints` table (default `memweave_checkpoints`), for your
    own migrations, in `metadata` (a new `MetaData` when None).

    One row per checkpoint: a database-generated `seq` orders a thread, `thread` is
    `thread_key(workflow, session_id)` (so ids compare exactly on every database), and `data`
    is the checkpoint's JSON. `workflow` and `session_id` are kept for inspection only.
    `table_prefix` (also the first positional argument) is the deprecated way to name it: the
    exact start of the name, as before (`"app_"` names `app_checkpoints`); it goes in 0.3.

    Raises:
        ConfigurationError: The namespace (or prefix) is not valid, or both were given.
    """
    owner = "checkpoint_table"
    renamed_argument(owner, "table_prefix", table_prefix, "namespace", namespace)
    return _table(sql_names(namespace, table_prefix, owner=owner)[1], metadata)


def _table(table_prefix: str, metadata: MetaData | None) -> Table:
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
    Reads are one indexed query on `(thread, seq)`. The table, `<namespace>_checkpoints`, is
    created on first use.

    Event loops: as `SQLChatHistoryProvider`. Built from a URL, the store works in any event
    loop, with an engine per loop disposed of when its loop shuts down; a `client` you pass
    in (or an in-memory SQLite database) serves the loop that first used the store, and a call
    from another loop raises `EventLoopMismatch`.

    Timeouts and retries: as `SQLChatHistoryProvider`'s. Every call must finish within
    `timeout` (else `BackendTimeout`), and since each is idempotent (a save is by checkpoint
    id), every call that fails transiently is retried up to `retries` times.

    Args:
        url: A SQLAlchemy URL (`sqlite+aiosqlite:///chat.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...`); the same settings as `SQLChatHistoryProvider` are applied.
            Without it (and without a `client`), the SQLite file `memweave.db` in memweave's
            data directory (`$MEMWEAVE_HOME`, else `platformdirs.user_data_path("memweave")`;
            created, mode 0o700, if missing, and its path logged at INFO), the file
            `SQLChatHistoryProvider` uses by default too.
        client: An `AsyncEngine` to use instead of a URL; the caller keeps ownership.
        namespace: The name this store's data lives under, so several applications share
            one database: the table is `<namespace>_checkpoints` (default `memweave`, as
            `SQLChatHistoryProvider`'s). 1-31 ASCII letters, digits or underscores, not
            starting with a digit.
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).
        timeout: Seconds each call may take, retries included (default 10; None: no limit);
            also `?timeout=` in the URL.
        retries: Retries of a transiently failed call (default 3; 0: none); also
            `?retries=` in the URL.
        engine: Deprecated name of `client`; goes in 0.3.
        table_prefix: Deprecated: the exact start of the table name (`app_` names
            `app_checkpoints`, as before); use `namespace`. Goes in 0.3.

    Raises:
        ConfigurationError: A bad URL or option, or a name and its deprecated name both.

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
        client: AsyncEngine | None = None,
        namespace: str | None = None,
        max_checkpoints: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        engine: AsyncEngine | None = None,
        table_prefix: str | None = None,
    ) -> None:
        owner = type(self).__name__
        client = renamed_argument(owner, "engine", engine, "client", client)
        renamed_argument(owner, "table_prefix", table_prefix, "namespace", namespace)
        super().__init__(max_checkpoints=max_checkpoints)
        url, self.timeout, self.retries = resolve_options(url, timeout, retries)
        self._policy = CallPolicy(self.timeout, self.retries)
        names = sql_names(namespace, table_prefix, owner=owner)
        self.namespace = names[0]
        """The name this store's data lives under."""
        self._table = _table(names[1], None)
        # Per event loop: the engine and the lock queueing SQLite's writers.
        self._engines = Engines(url, client, owner=owner, timeout=self.timeout)
        self._url = self._engines.url
        self._statement_limit = statement_limit(url if client is None else None, self.timeout)
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

            async def create() -> None:
                async with link.write_lock, link.engine.begin() as conn:
                    await conn.run_sync(self._table.metadata.create_all)

            # Another process may be creating the same table right now; look again.
            await AsyncRetrying(
                stop=stop_after_attempt(5),
                wait=wait_incrementing(start=0.05, increment=0.05),
                retry=retry_if_exception_type(exc.DBAPIError),
                reraise=True,
            )(create)
            self._ready = True

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one call under `timeout`, retrying transient failures (all calls are
        idempotent)."""
        return await self._policy.run(operation, self._map_errors, call, retry=True, url=self._url)

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
        save = functools.partial(self._save, thread, checkpoint, data, max_checkpoints)
        await self._call("save_checkpoint", save)

    async def _save(
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
        return await self._call(
            "get_checkpoint", functools.partial(self._read_one, thread, checkpoint_id)
        )

    async def _read_one(self, thread: str, checkpoint_id: str | None) -> bytes | None:
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
        return await self._call(
            "list_checkpoints", functools.partial(self._read_many, thread, limit)
        )

    async def _read_many(self, thread: str, limit: int | None) -> list[bytes]:
        await self._setup()
        t = self._table
        query = select(t.c.data).where(t.c.thread == thread).order_by(t.c.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            return [bytes(value) for value in (await conn.execute(query)).scalars()]

    async def _delete(self, thread: str) -> None:
        await self._call("delete_checkpoints", functools.partial(self._drop, thread))

    async def _drop(self, thread: str) -> None:
        await self._setup()
        link = self._engines.get()
        async with link.write_lock, link.engine.begin() as conn:
            await conn.execute(delete(self._table).where(self._table.c.thread == thread))

    async def _aclose(self) -> None:
        await self._engines.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        with map_sql_errors(
            self._url,
            statement_limit=self._statement_limit,
            bound_to=self._engines.bound_to,
            owner=type(self).__name__,
            schema_hint=f"the checkpoint table {self._table.name!r} is missing or differs",
        ):
            yield
