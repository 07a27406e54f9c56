"""`SQLStoreBackend`: the items of a `MemweaveStore` in SQLite, PostgreSQL or MariaDB/MySQL."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Double,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler

from memweave.errors import (
    ConfigurationError,
)
from memweave.integrations._sql_retry import set_up_racing
from memweave.integrations.langgraph._store_backend import (
    LABEL_WIDTH,
    MAX_DEPTH,
    ItemWrite,
    StoreBackend,
    StoredRow,
)
from memweave.providers._resilience import DEFAULT_TIMEOUT
from memweave.providers._sql_engine import Engines, statement_limit
from memweave.providers._sql_errors import map_sql_errors
from memweave.providers._sql_schema import EpochNow, MySQLBlob

__all__ = ["SQLStoreBackend", "store_table"]

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_PAGE = 500
_SWEEP_BATCH = 500


class _PathString(String):
    """A namespace path: ASCII hex compared byte by byte (PostgreSQL `"C"` collation,
    MariaDB/MySQL `ascii_bin`), so range bounds mean the same on every database."""

    __visit_name__ = "memweave_store_path"
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(MAX_DEPTH * LABEL_WIDTH)


@compiles(_PathString)
def _path_default(type_: _PathString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"VARCHAR({type_.length})"


@compiles(_PathString, "postgresql")
def _path_postgresql(type_: _PathString, compiler: TypeCompiler, **kw: Any) -> str:
    return f'VARCHAR({type_.length}) COLLATE "C"'


@compiles(_PathString, "mysql")
@compiles(_PathString, "mariadb")
def _path_mysql(type_: _PathString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"VARCHAR({type_.length}) CHARACTER SET ascii COLLATE ascii_bin"


def store_table(table_prefix: str = "memweave_", metadata: MetaData | None = None) -> Table:
    """Return the `<prefix>store_items` table of `MemweaveStore`, for your own migrations.

    One row per item: `id` is `item_id(namespace, key)`, `path` the namespace path (the
    index range of a namespace prefix), `namespace` its labels as JSON, `data` the item's
    JSON body, and `created_at`, `updated_at` and `expires_at` seconds since the epoch on the
    database's clock; `ttl` is the item's TTL in seconds.

    Raises:
        ConfigurationError: The prefix is not 1-32 ASCII letters, digits or underscores.
    """
    if not isinstance(table_prefix, str) or not _PREFIX.fullmatch(table_prefix):
        raise ConfigurationError(
            "table_prefix must be 1-32 ASCII letters, digits or underscores, not starting "
            f"with a digit, got {table_prefix!r}"
        )
    name = f"{table_prefix}store_items"
    table = Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("id", String(32), primary_key=True),
        Column("path", _PathString(), nullable=False),
        Column("namespace", Text(), nullable=False),
        Column("data", LargeBinary().with_variant(MySQLBlob(), "mysql", "mariadb"), nullable=False),
        Column("created_at", Double(), nullable=False),
        Column("updated_at", Double(), nullable=False),
        Column("expires_at", Double(), nullable=True),
        Column("ttl", Double(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    Index(f"{name}_path", table.c.path)
    Index(f"{name}_updated", table.c.updated_at, table.c.id)
    Index(f"{name}_expires", table.c.expires_at)
    return table


class SQLStoreBackend(StoreBackend):
    """Items in one SQL table, one row each; a batch of puts and deletes is one transaction.

    A put is an upsert on the item id that keeps `created_at`; a read is one indexed query
    that leaves out expired rows (`expires_at` on the database's clock), and a refreshing
    read of items with a TTL adds one `UPDATE` of their `expires_at`. A namespace prefix is
    one range on the `path` index. `sweep` deletes expired rows in batches of 500.

    Event loops: as `SQLChatHistoryProvider`. Built from a URL, the backend opens an engine
    per event loop; an `engine` passed in serves the loop that first used it.

    Args:
        url: A SQLAlchemy URL (`sqlite+aiosqlite:///store.db`, `postgresql+asyncpg://...`,
            `mysql+aiomysql://...`), or None with `engine`.
        engine: An `AsyncEngine` to use instead; the caller keeps ownership.
        table_prefix: First part of the table name.
        owner: The class name shown in errors.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        table_prefix: str = "memweave_",
        owner: str = "MemweaveStore",
    ) -> None:
        self._table = store_table(table_prefix)
        self._owner = owner
        self._engines = Engines(url, engine, owner=owner)
        self.url = self._engines.url
        self._statement_limit = statement_limit(url if engine is None else None, DEFAULT_TIMEOUT)
        self._ready = False

    @property
    def engine(self) -> AsyncEngine:
        """The engine of the running event loop (outside any loop, the first one)."""
        return self._engines.current()

    async def setup(self) -> None:
        """Create the table and its indexes if they are missing."""
        with self._map_errors():
            await self._setup()

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

            await set_up_racing(create)
            self._ready = True

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        await self._setup()
        link = self._engines.get()
        async with link.write_lock, link.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        await self._setup()
        link = self._engines.get()
        async with link.read_lock, link.engine.connect() as conn:
            yield conn

    def _upsert(self) -> Any:
        t = self._table
        values = {
            "id": bindparam("id"),
            "path": bindparam("path"),
            "namespace": bindparam("namespace"),
            "data": bindparam("data", type_=t.c.data.type),
            "created_at": EpochNow(),
            "updated_at": EpochNow(),
            # NULL + anything is NULL: an item without a TTL never expires.
            "expires_at": EpochNow() + cast(bindparam("ttl", type_=Double()), Double()),
            "ttl": cast(bindparam("ttl", type_=Double()), Double()),
        }
        kept = ("path", "namespace", "data", "updated_at", "expires_at", "ttl")
        name = self._engines.dialect_name
        if name in ("sqlite", "postgresql"):
            dialect = sqlite if name == "sqlite" else postgresql
            statement = dialect.insert(t).values(values)
            return statement.on_conflict_do_update(
                index_elements=[t.c.id],
                set_={column: statement.excluded[column] for column in kept},
            )
        statement = mysql.insert(t).values(values)
        return statement.on_duplicate_key_update(
            {column: statement.inserted[column] for column in kept}
        )

    async def write(self, writes: Sequence[ItemWrite]) -> None:
        """One transaction: the deletes, then one upsert per put."""
        deletes = [write.id for write in writes if write.body is None]
        puts = [write for write in writes if write.body is not None]
        with self._map_errors():
            async with self._writing() as conn:
                if deletes:
                    await conn.execute(delete(self._table).where(self._table.c.id.in_(deletes)))
                for write in puts:
                    assert write.body is not None
                    await conn.execute(
                        self._upsert(),
                        {
                            "id": write.id,
                            "path": write.path,
                            "namespace": json.dumps(list(write.namespace), ensure_ascii=False),
                            "data": write.body.encode(),
                            "ttl": write.ttl,
                        },
                    )

    def _live(self) -> Any:
        t = self._table
        return or_(t.c.expires_at.is_(None), t.c.expires_at > EpochNow())

    def _columns(self) -> Any:
        t = self._table
        return select(t.c.id, t.c.data, t.c.created_at, t.c.updated_at, t.c.ttl)

    @staticmethod
    def _row(record: Any) -> StoredRow:
        return StoredRow(
            id=str(record[0]),
            body=bytes(record[1]),
            created_at=float(record[2]),
            updated_at=float(record[3]),
            ttl=None if record[4] is None else float(record[4]),
        )

    async def read(self, ids: Sequence[str], *, refresh: bool) -> list[StoredRow]:
        """One query; a refresh of items with a TTL is one `UPDATE` more."""
        if not ids:
            return []
        query = self._columns().where(self._table.c.id.in_(list(ids)), self._live())
        with self._map_errors():
            async with self._reading() as conn:
                rows = [self._row(record) for record in await conn.execute(query)]
        if refresh:
            await self.touch(rows)
        return rows

    async def scan(
        self, bounds: tuple[str, str] | None, window: tuple[int, int] | None
    ) -> list[StoredRow]:
        """A window is one `ORDER BY updated_at DESC LIMIT/OFFSET` query; a full scan reads
        pages of 500 by id."""
        t = self._table
        where = [self._live()]
        if bounds is not None:
            where += [t.c.path >= bounds[0], t.c.path < bounds[1]]
        with self._map_errors():
            async with self._reading() as conn:
                if window is not None:
                    offset, limit = window
                    query = (
                        self._columns()
                        .where(*where)
                        .order_by(t.c.updated_at.desc(), t.c.id)
                        .offset(offset)
                        .limit(limit)
                    )
                    return [self._row(record) for record in await conn.execute(query)]
                out: list[StoredRow] = []
                after = ""
                while True:
                    query = (
                        self._columns().where(*where, t.c.id > after).order_by(t.c.id).limit(_PAGE)
                    )
                    page = [self._row(record) for record in await conn.execute(query)]
                    out.extend(page)
                    if len(page) < _PAGE:
                        return out
                    after = page[-1].id

    async def namespaces(self, bounds: tuple[str, str] | None) -> list[tuple[str, ...]]:
        """One `GROUP BY path` query over the range."""
        t = self._table
        query = select(func.min(t.c.namespace)).where(self._live()).group_by(t.c.path)
        if bounds is not None:
            query = query.where(t.c.path >= bounds[0], t.c.path < bounds[1])
        with self._map_errors():
            async with self._reading() as conn:
                found = (await conn.execute(query)).scalars().all()
        out: list[tuple[str, ...]] = []
        for text in found:
            labels = json.loads(text)
            if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
                out.append(tuple(labels))
        return out

    async def touch(self, rows: Sequence[StoredRow]) -> None:
        """One `UPDATE` of the rows that have a TTL."""
        ids = [row.id for row in rows if row.ttl is not None]
        if not ids:
            return
        t = self._table
        statement = (
            update(t)
            .where(t.c.id.in_(ids), t.c.ttl.is_not(None))
            .values(expires_at=EpochNow() + t.c.ttl)
        )
        with self._map_errors():
            async with self._writing() as conn:
                await conn.execute(statement)

    async def sweep(self) -> list[str]:
        """Delete expired rows, 500 per transaction, until none is left."""
        t = self._table
        expired = and_(t.c.expires_at.is_not(None), t.c.expires_at <= EpochNow())
        removed: list[str] = []
        with self._map_errors():
            while True:
                async with self._writing() as conn:
                    ids = [
                        str(value)
                        for value in (
                            await conn.execute(select(t.c.id).where(expired).limit(_SWEEP_BATCH))
                        ).scalars()
                    ]
                    if ids:
                        await conn.execute(delete(t).where(t.c.id.in_(ids), expired))
                removed.extend(ids)
                if len(ids) < _SWEEP_BATCH:
                    return removed

    async def aclose(self) -> None:
        """Dispose of the engines built here."""
        with self._map_errors():
            await self._engines.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        with map_sql_errors(
            self.url,
            statement_limit=self._statement_limit,
            bound_to=self._engines.bound_to,
            owner=self._owner,
            schema_hint=f"the store table {self._table.name!r} is missing or differs",
        ):
            yield
