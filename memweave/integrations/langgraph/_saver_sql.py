"""The SQL storage of `MemweaveCheckpointSaver`: SQLite, PostgreSQL and MariaDB/MySQL.

Three tables per prefix (`memweave_` by default), keyed by the digests of `_records.key_of`
(`thread` of the thread id, `ns` of the namespace), so ids compare exactly on every database
and no key outgrows MariaDB's index limit:

- `<prefix>lg_checkpoints`: one row per checkpoint, keyed `(thread, ns, checkpoint_id)`; the
  key also orders a namespace's checkpoints, and an index on `run` serves `delete_for_runs`.
- `<prefix>lg_writes`: one row per pending write, keyed `(thread, ns, checkpoint_id, task_id,
  idx)`.
- `<prefix>lg_blobs`: one row per stored channel value, keyed `(thread, ns, blob_key)`.

The version row `langgraph_checkpoints` in `<prefix>schema` (the table memweave's history
uses) guards against reading another layout.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    Table,
    delete,
    exc,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memweave._loops import PerLoop
from memweave.errors import InvalidArgument, SchemaMismatch
from memweave.integrations._sql_retry import rerun_conflicts, set_up_racing
from memweave.integrations.langgraph._records import (
    Blob,
    CheckpointStorage,
    Cursor,
    Head,
    NewCheckpoint,
    Write,
    key_of,
)
from memweave.integrations.langgraph._saver_sql_fast import (
    FAST_CHECKPOINT_COLUMNS,
    Reader,
    driver_errors,
    fast_path,
)
from memweave.integrations.langgraph._saver_sql_schema import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    assemble,
    details_query,
    heads_query,
    saver_tables,
)
from memweave.providers._resilience import DEFAULT_TIMEOUT
from memweave.providers._sql_engine import Engines, statement_limit
from memweave.providers._sql_errors import map_sql_errors

__all__ = ["SQLCheckpointStorage"]

_CHUNK = 500  # ids per IN list
_OWNER = "MemweaveCheckpointSaver"
T = TypeVar("T")


def _head(row: Sequence[Any]) -> Head:
    """A `Head` from a row of `heads_query` (or the fast path's equivalent)."""
    return Head(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]), _split(row[6]))


def _split(refs: str) -> tuple[str, ...]:
    return tuple(refs.split()) if refs else ()


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class SQLCheckpointStorage(CheckpointStorage):
    """Checkpoints in SQL: a `put` is one transaction (the missing blobs, then an upsert of
    the checkpoint row), `put_writes` one statement per kind of write, and a read two
    statements (the checkpoint rows, then their writes and blobs in one `UNION ALL`). On
    SQLite (aiosqlite) and PostgreSQL (asyncpg) these run on the driver's connection
    (`_saver_sql_fast`); deletes, copies and prunes are SQLAlchemy Core transactions.

    Event loops: as `SQLChatHistoryProvider` (see `memweave.providers._sql_engine.Engines`).

    Args:
        url: A SQLAlchemy URL, or None with `engine` (neither: memweave's default SQLite file).
        engine: The caller's `AsyncEngine`, left open by `aclose()`.
        table_prefix: First part of the table names.
    """

    def __init__(
        self, url: str | None, *, engine: AsyncEngine | None = None, table_prefix: str
    ) -> None:
        self.tables = saver_tables(table_prefix)
        self._engines = Engines(url, engine, owner=_OWNER)
        self._url = self._engines.url
        self._statement_limit = statement_limit(url if engine is None else None, DEFAULT_TIMEOUT)
        self._dialect = self._engines.dialect_name
        self._sqlite = self._engines.sqlite
        self._fast = fast_path(self.tables, self._engines.template.dialect)
        # SQLite's hot calls on one connection kept per event loop, as LangGraph's own saver
        # does: a pool checkout and its reset cost more than a read (the storage's writers
        # queue anyway; in WAL mode other processes' readers and writers are not blocked).
        self._readers: PerLoop[Reader] | None = None
        if self._fast is not None and self._sqlite and not self._engines.in_memory:
            self._readers = PerLoop(Reader, close=Reader.aclose)
        self._ready = False

    @property
    def engine(self) -> AsyncEngine:
        """The engine of the running event loop (outside a loop, the first one)."""
        return self._engines.current()

    # -- plumbing -----------------------------------------------------------------------------

    async def _setup(self) -> None:
        if self._ready:
            return
        link = self._engines.get()
        async with link.setup_lock:
            if self._ready:
                return
            await set_up_racing(self._create)
            self._ready = True

    async def _create(self) -> None:
        link = self._engines.get()
        schema = self.tables.schema
        found_version = select(schema.c.version).where(schema.c.name == SCHEMA_NAME)
        async with link.write_lock, link.engine.begin() as conn:
            await conn.run_sync(self.tables.metadata.create_all)
            found = (await conn.execute(found_version)).scalar()
            if found is None:
                await conn.execute(
                    self._insert_ignore(schema), {"name": SCHEMA_NAME, "version": SCHEMA_VERSION}
                )
                found = (await conn.execute(found_version)).scalar()
        if found != SCHEMA_VERSION:
            raise SchemaMismatch(found, SCHEMA_VERSION, f"table {schema.name!r} at {self._url}")

    async def _write(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, reads_first: bool = False
    ) -> T:
        await self._setup()

        async def once() -> T:
            async with self._engines.transaction(reads_first=reads_first) as conn:
                return await work(conn)

        return await rerun_conflicts(once)

    @contextlib.asynccontextmanager
    async def _driver(self, *, write: bool = False) -> AsyncIterator[Any]:
        """The driver's own connection of a pooled one (see `_saver_sql_fast`). A SQLite
        write runs in the transaction SQLite opens on its first statement, committed on the
        way out; PostgreSQL's statements are each atomic by themselves."""
        await self._setup()
        link = self._engines.get()
        try:
            if self._readers is not None:
                reader = self._readers.get()
                async with link.write_lock if write else contextlib.nullcontext(), reader.lock:
                    driver = await reader.driver(link.engine)
                    if not write:
                        yield driver
                        return
                    try:
                        yield driver
                    except BaseException:
                        await driver.rollback()
                        raise
                    await driver.commit()
                return
            lock = link.write_lock if write else link.read_lock
            opened = link.engine.begin() if write and self._sqlite else link.engine.connect()
            async with lock, opened as conn:
                raw = await conn.get_raw_connection()
                yield raw.driver_connection
        except driver_errors() as error:
            # As SQLAlchemy would have wrapped it: retried when transient, then mapped.
            raise exc.OperationalError("(memweave fast path)", None, error) from error

    def _insert_ignore(self, table: Table) -> Any:
        if self._dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return insert(table).prefix_with("IGNORE")

    def _upsert(self, table: Table, keys: Sequence[str], columns: Sequence[str]) -> Any:
        if self._dialect in ("sqlite", "postgresql"):
            dialect = sqlite if self._dialect == "sqlite" else postgresql
            statement = dialect.insert(table)
            excluded = statement.excluded
            return statement.on_conflict_do_update(
                index_elements=list(keys), set_={c: excluded[c] for c in columns}
            )
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update({c: statement.inserted[c] for c in columns})

    # -- writes -------------------------------------------------------------------------------

    @functools.cached_property
    def _put_checkpoint(self) -> Any:
        columns = ("thread_id", "checkpoint_ns", "parent_id", "run", "delta", "refs")
        return self._upsert(
            self.tables.checkpoints,
            ("thread", "ns", "checkpoint_id"),
            (*columns, "document", "meta"),
        )

    async def put(self, new: NewCheckpoint) -> None:
        head = new.head
        thread, ns = key_of(head.thread_id), key_of(head.checkpoint_ns)
        row = {
            "thread": thread,
            "ns": ns,
            "checkpoint_id": head.checkpoint_id,
            "thread_id": head.thread_id,
            "checkpoint_ns": head.checkpoint_ns,
            "parent_id": head.parent_id,
            "run": None if new.run_id is None else key_of(new.run_id),
            "delta": new.delta,
            "refs": " ".join(head.refs),
            "document": head.document,
            "meta": head.metadata,
        }
        blobs = [_blob_row(thread, ns, blob) for blob in new.blobs]
        if self._fast is not None:
            fast = self._fast
            values = [row[c] for c in FAST_CHECKPOINT_COLUMNS]
            tuples = [list(b.values()) for b in blobs]

            async def quick() -> None:
                async with self._driver(write=True) as driver:
                    await fast.put(driver, values, tuples)

            await rerun_conflicts(quick)
            return

        async def work(conn: AsyncConnection) -> None:
            if blobs:
                await conn.execute(self._insert_ignore(self.tables.blobs), blobs)
            await conn.execute(self._put_checkpoint, row)

        await self._write(work)

    @functools.cached_property
    def _replace_write(self) -> Any:
        return self._upsert(
            self.tables.writes,
            ("thread", "ns", "checkpoint_id", "task_id", "idx"),
            ("channel", "type", "data", "task_path"),
        )

    async def put_writes(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, writes: Sequence[Write]
    ) -> None:
        base = {"thread": key_of(thread_id), "ns": key_of(checkpoint_ns)}
        rows: list[dict[str, Any]] = [
            {
                **base,
                "checkpoint_id": checkpoint_id,
                "task_id": w.task_id,
                "idx": w.idx,
                "channel": w.channel,
                "type": w.type,
                "data": w.data,
                "task_path": w.task_path,
            }
            for w in writes
        ]
        replaced = [row for row in rows if row["idx"] < 0]
        kept = [row for row in rows if row["idx"] >= 0]
        if self._fast is not None:
            fast = self._fast

            async def quick() -> None:
                async with self._driver(write=True) as driver:
                    await fast.put_writes(
                        driver,
                        [list(r.values()) for r in kept],
                        [list(r.values()) for r in replaced],
                    )

            await rerun_conflicts(quick)
            return

        async def work(conn: AsyncConnection) -> None:
            if kept:
                await conn.execute(self._insert_ignore(self.tables.writes), kept)
            if replaced:
                await conn.execute(self._replace_write, replaced)

        await self._write(work)

    async def delete_thread(self, thread_id: str) -> None:
        thread = key_of(thread_id)

        async def work(conn: AsyncConnection) -> None:
            for table in (self.tables.checkpoints, self.tables.writes, self.tables.blobs):
                await conn.execute(delete(table).where(table.c.thread == thread))

        await self._write(work)

    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        cp = self.tables.checkpoints
        runs = [key_of(run) for run in run_ids]

        async def work(conn: AsyncConnection) -> None:
            doomed: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for chunk in _chunks(runs):
                found = await conn.execute(
                    select(cp.c.thread, cp.c.ns, cp.c.checkpoint_id, cp.c.refs).where(
                        cp.c.run.in_(chunk)
                    )
                )
                for thread, ns, checkpoint_id, refs in found:
                    doomed.setdefault((thread, ns), []).append((checkpoint_id, refs))
            for (thread, ns), rows in doomed.items():
                await self._drop(conn, thread, ns, rows)

        await self._write(work, reads_first=True)

    async def _drop(
        self, conn: AsyncConnection, thread: str, ns: str, rows: Sequence[tuple[str, str]]
    ) -> None:
        """Delete checkpoints of one namespace, their writes, and the blobs they alone used."""
        cp, wr, bl = self.tables.checkpoints, self.tables.writes, self.tables.blobs
        ids = [checkpoint_id for checkpoint_id, _ in rows]
        for chunk in _chunks(ids):
            for table in (wr, cp):
                await conn.execute(
                    delete(table).where(
                        table.c.thread == thread, table.c.ns == ns, table.c.checkpoint_id.in_(chunk)
                    )
                )
        freed = {key for _, refs in rows for key in _split(refs)}
        if not freed:
            return
        remaining = await conn.execute(
            select(cp.c.refs).where(cp.c.thread == thread, cp.c.ns == ns)
        )
        for (refs,) in remaining:
            freed.difference_update(_split(refs))
        for chunk in _chunks(sorted(freed)):
            await conn.execute(
                delete(bl).where(bl.c.thread == thread, bl.c.ns == ns, bl.c.blob_key.in_(chunk))
            )

    async def copy_thread(self, source: str, target: str) -> None:
        src, dst = key_of(source), key_of(target)
        cp, wr, bl = self.tables.checkpoints, self.tables.writes, self.tables.blobs

        def copied(table: Table, **values: Any) -> Any:
            names = [c.name for c in table.columns]
            chosen = [
                literal(values[n], table.c[n].type).label(n) if n in values else table.c[n]
                for n in names
            ]
            return self._insert_ignore(table).from_select(
                names, select(*chosen).where(table.c.thread == src)
            )

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(copied(bl, thread=dst))
            await conn.execute(copied(wr, thread=dst))
            await conn.execute(copied(cp, thread=dst, thread_id=target))

        await self._write(work, reads_first=True)

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        if not keep_latest:
            for thread_id in thread_ids:
                await self.delete_thread(thread_id)
            return
        cp = self.tables.checkpoints
        keys = [key_of(thread_id) for thread_id in thread_ids]
        delta: list[str] = []
        for chunk in _chunks(keys):
            async with self._reading() as conn:
                found = await conn.execute(
                    select(cp.c.thread_id).where(cp.c.thread.in_(chunk), cp.c.delta).distinct()
                )
                delta.extend(row[0] for row in found)
        if delta:
            raise InvalidArgument(
                "thread_ids",
                sorted(delta),
                "these threads use a DeltaChannel, whose values need the checkpoints "
                "keep_latest would delete",
            )
        for thread in keys:
            await self._write(functools.partial(self._keep_latest, thread), reads_first=True)

    async def _keep_latest(self, thread: str, conn: AsyncConnection) -> None:
        cp = self.tables.checkpoints
        latest = await conn.execute(
            select(cp.c.ns, func.max(cp.c.checkpoint_id))
            .where(cp.c.thread == thread)
            .group_by(cp.c.ns)
        )
        for ns, newest in latest.all():
            # Ids below the newest only: what a concurrent run saves meanwhile is newer.
            doomed = await conn.execute(
                select(cp.c.checkpoint_id, cp.c.refs).where(
                    cp.c.thread == thread, cp.c.ns == ns, cp.c.checkpoint_id < newest
                )
            )
            rows = [(checkpoint_id, refs) for checkpoint_id, refs in doomed]
            if not rows:
                continue
            await self._drop(conn, thread, ns, rows)
            await conn.execute(
                update(cp)
                .where(
                    cp.c.thread == thread,
                    cp.c.ns == ns,
                    cp.c.checkpoint_id == newest,
                    cp.c.parent_id < newest,
                )
                .values(parent_id=None)
            )

    # -- reads --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        await self._setup()
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            yield conn

    async def read(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        checkpoint_id: str | None = None,
        after: Cursor | None = None,
        count: int | None = None,
        details: bool = True,
    ) -> list[Head]:
        if self._fast is not None and thread_id is not None and checkpoint_ns is not None:
            thread, ns = key_of(thread_id), key_of(checkpoint_ns)
            if after is None or (after.ns_key in ("", ns) and after.thread_key in ("", thread)):
                below = after.checkpoint_id if after is not None else None
                async with self._driver() as driver:
                    rows = await self._fast.heads(driver, thread, ns, checkpoint_id, below, count)
                    heads = [_head(row) for row in rows]
                    if details and heads:
                        found = await self._fast.details(
                            driver,
                            thread,
                            ns,
                            [h.checkpoint_id for h in heads],
                            sorted({k for h in heads for k in h.refs}),
                        )
                        assemble(heads, found)
                return heads
        query, params = heads_query(self.tables, thread_id, checkpoint_ns, checkpoint_id, after)
        if count is not None:
            query = query.limit(count)
        async with self._reading() as conn:
            found = await conn.execute(query, params)
            heads = [_head(row) for row in found]
            if details and heads:
                await self._details(conn, heads)
        return heads

    async def details(self, heads: Sequence[Head]) -> None:
        if not heads:
            return
        places = {(h.thread_key, h.ns_key) for h in heads}
        if self._fast is not None and len(places) == 1:
            ((thread, ns),) = places
            async with self._driver() as driver:
                found = await self._fast.details(
                    driver,
                    thread,
                    ns,
                    [h.checkpoint_id for h in heads],
                    sorted({k for h in heads for k in h.refs}),
                )
            assemble(heads, found)
            return
        async with self._reading() as conn:
            await self._details(conn, heads)

    async def _details(self, conn: AsyncConnection, heads: Sequence[Head]) -> None:
        """Load writes and blobs of `heads` with one statement per thread."""
        by_thread: dict[str, list[Head]] = {}
        for head in heads:
            by_thread.setdefault(head.thread_key, []).append(head)
        for thread, group in by_thread.items():
            found = await conn.execute(details_query(self.tables, thread, group))
            assemble(group, list(found))

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._readers is not None:
            await self._readers.aclose()
        await self._engines.aclose()

    @contextlib.contextmanager
    def map_errors(self) -> Iterator[None]:
        with map_sql_errors(
            self._url,
            statement_limit=self._statement_limit,
            bound_to=self._engines.bound_to,
            owner=_OWNER,
            schema_hint=(
                f"the checkpoint tables at {self._url} are missing or differ from schema "
                f"version {SCHEMA_VERSION}"
            ),
        ):
            yield


def _blob_row(thread: str, ns: str, blob: Blob) -> dict[str, Any]:
    return {"thread": thread, "ns": ns, "blob_key": blob.key, "type": blob.type, "data": blob.data}
