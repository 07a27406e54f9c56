"""Tables, column types and prebuilt statements of `SQLChatHistoryProvider`.

Three tables per namespace, each name starting with `<namespace>_` (the table prefix; the
default namespace `memweave` gives `memweave_`):

- `<prefix>messages`: one row per stored message. `id` is the database-generated key that
  orders a session; `(session_id, message_id)` is unique, which makes appends idempotent;
  the index on `(session_id, id)` serves `limit=N` reads and trims from either end.
- `<prefix>sessions`: one row per session with its message count, `expires_at`, `created_at`
  and `updated_at` (seconds since the epoch on the database's clock, or NULL), so counting,
  listing, ttl checks and `session_info` never scan messages. Its primary key serves
  `list_sessions` pages; the index on `(updated_at, session_id)` serves `prune`.
- `<prefix>schema`: the version row that guards against reading a different layout.

Version 2 added `created_at`, `updated_at` and their index; `upgrade_schema` brings version 1
tables up to it. Statements are built once per table set and dialect, from Core constructs
with bound parameters, so SQLAlchemy's compiled cache serves every call after the first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
    and_,
    asc,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.compiler import SQLCompiler, TypeCompiler
from sqlalchemy.sql.expression import (
    BindParameter,
    ColumnElement,
    Executable,
    FromClause,
    FunctionElement,
    Select,
)
from sqlalchemy.types import TypeDecorator

from memweave._deprecation import renamed_argument
from memweave.errors import ConfigurationError, SchemaMismatch
from memweave.messages import MAX_ID_LENGTH
from memweave.providers._namespace import sql_names
from memweave.providers.base import BATCH_SIZE

# The role as SQL text, not a bound parameter: a partial index on role = 'system' serves
# only queries whose predicate says so literally (SQLite; PostgreSQL's generic plans).
SYSTEM_ROLE: ColumnElement[str] = literal_column("'system'")

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "EpochNow",
    "ExactString",
    "MySQLBlob",
    "SchemaState",
    "Statements",
    "Tables",
    "build_metadata",
    "build_statements",
    "read_schema_state",
    "tables_for",
    "upgrade_schema",
]

SCHEMA_VERSION = 2
"""Version of the table layout written by this memweave (2 added the session times)."""

SCHEMA_NAME = "chat_history"
"""Key of the version row in `<prefix>schema`."""

_ADDED_IN_2 = ("created_at", "updated_at")

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


class ExactString(String):
    """Up to 256 characters of any unicode, compared exactly and ordered by code point.

    `abc`, `ABC`, `abc ` and `ábc` are four values on every database: PostgreSQL uses the
    `"C"` collation, MariaDB `utf8mb4_nopad_bin` and MySQL `utf8mb4_0900_bin` (both NO PAD,
    unlike `utf8mb4_bin`, which ignores trailing spaces), SQLite its default `BINARY`.
    """

    __visit_name__ = "memweave_exact_string"
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(MAX_ID_LENGTH)


@compiles(ExactString)
def _exact_default(type_: ExactString, compiler: TypeCompiler, **kw: Any) -> str:
    return f"VARCHAR({type_.length})"


@compiles(ExactString, "postgresql")
def _exact_postgresql(type_: ExactString, compiler: TypeCompiler, **kw: Any) -> str:
    return f'VARCHAR({type_.length}) COLLATE "C"'


@compiles(ExactString, "mysql")
@compiles(ExactString, "mariadb")
def _exact_mysql(type_: ExactString, compiler: TypeCompiler, **kw: Any) -> str:
    mariadb = getattr(compiler.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    return f"VARCHAR({type_.length}) CHARACTER SET utf8mb4 COLLATE {collation}"


class MySQLBlob(TypeDecorator[bytes]):
    """`LONGBLOB` whose values travel as hex text unwrapped by `UNHEX()` on the server.

    aiomysql 0.3.2 cannot bind `bytes` with PyMySQL 1.2.3 or later (aio-libs/aiomysql#1080);
    hex text is what PyMySQL itself sends for bytes, so this costs nothing on the wire.
    """

    impl = mysql.LONGBLOB
    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[bytes]) -> ColumnElement[bytes]:
        return func.unhex(bindvalue, type_=self)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        return _to_hex


def _to_hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


class EpochNow(FunctionElement[float]):
    """The database's clock in seconds since the epoch, so every writer shares one clock."""

    type = Double()
    inherit_cache = True
    name = "memweave_epoch_now"


@compiles(EpochNow, "sqlite")
def _now_sqlite(element: EpochNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(EpochNow, "postgresql")
def _now_postgresql(element: EpochNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)"


@compiles(EpochNow, "mysql")
@compiles(EpochNow, "mariadb")
def _now_mysql(element: EpochNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "UNIX_TIMESTAMP(NOW(6))"


@dataclass(frozen=True, slots=True)
class Tables:
    """The three tables of one prefix."""

    metadata: MetaData
    messages: Table
    sessions: Table
    schema: Table
    sqlite_system_index: Index
    """SQLite's index of system messages (created on tables that predate it)."""
    updated_index: Index
    """The sessions' `(updated_at, session_id)` index that `prune` walks (added in version 2)."""
    mysql_system_index: Index
    """MariaDB/MySQL's index of messages by role (created on tables that predate it)."""

    def system_index(self, dialect_name: str) -> Index | None:
        """The index a dialect needs for system-message lookups beyond `create_all`'s first
        version of the tables, if any."""
        if dialect_name == "sqlite":
            return self.sqlite_system_index
        if dialect_name in ("mysql", "mariadb"):
            return self.mysql_system_index
        return None


def build_metadata(table_prefix: str | None = None, *, namespace: str | None = None) -> MetaData:
    """Return the `MetaData` holding the tables of `SQLChatHistoryProvider(namespace=...)`
    (`<namespace>_messages`, ...; default `memweave`), for Alembic migrations.

    The same object is returned for the same namespace. `table_prefix` (also the first
    positional argument) is the deprecated way to name them: the exact start of every table
    name, as before (`"app_"` names `app_messages`); it goes in 0.3.

    Raises:
        ConfigurationError: The namespace (or prefix) is not valid, or both were given.
    """
    owner = "build_metadata"
    renamed_argument(owner, "table_prefix", table_prefix, "namespace", namespace)
    return tables_for(sql_names(namespace, table_prefix, owner=owner)[1]).metadata


@functools.cache
def tables_for(table_prefix: str) -> Tables:
    """Return the tables for `table_prefix`, built once per prefix and process."""
    if not isinstance(table_prefix, str) or not _PREFIX.fullmatch(table_prefix):
        raise ConfigurationError(
            "table_prefix must be 1-32 ASCII letters, digits or underscores, not starting "
            f"with a digit, got {table_prefix!r}"
        )
    p = table_prefix
    metadata = MetaData()
    messages = Table(
        f"{p}messages",
        metadata,
        # INTEGER PRIMARY KEY on SQLite is the rowid: always above every existing key.
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("session_id", ExactString(), nullable=False),
        Column("message_id", ExactString(), nullable=False),
        Column("role", String(16), nullable=False),
        Column("data", LargeBinary().with_variant(MySQLBlob(), "mysql", "mariadb"), nullable=False),
        UniqueConstraint("session_id", "message_id", name=f"{p}messages_session_message"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    Index(f"{p}messages_session_key", messages.c.session_id, messages.c.id)
    # Reduced reads fetch a long session's system messages; a partial index keeps that
    # lookup off the history length where the database has partial indexes. On SQLite it
    # also holds `role`: without table statistics, its planner otherwise ties it with the
    # session index and takes whichever was created last, and the session index walks the
    # whole session (46 ms at 100,000 messages, not 2 ms); matching two columns, it wins.
    Index(
        f"{p}messages_system",
        messages.c.session_id,
        messages.c.id,
        postgresql_where=messages.c.role == SYSTEM_ROLE,
    ).ddl_if(dialect="postgresql")
    sqlite_system = Index(
        f"{p}messages_system_role",
        messages.c.session_id,
        messages.c.role,
        messages.c.id,
        sqlite_where=messages.c.role == SYSTEM_ROLE,
    ).ddl_if(dialect="sqlite")
    # MariaDB/MySQL have no partial indexes; without `role` in an index, their system-message
    # lookup walks the whole session (66 ms, not 6 ms, for a windowed read at 100,000).
    mysql_system = Index(
        f"{p}messages_role",
        messages.c.session_id,
        messages.c.role,
        messages.c.id,
    ).ddl_if(dialect="mysql")  # MariaDB too: SQLAlchemy names its dialect "mysql"
    sessions = Table(
        f"{p}sessions",
        metadata,
        Column("session_id", ExactString(), primary_key=True),
        Column("message_count", BigInteger(), nullable=False, default=0),
        Column("expires_at", Double(), nullable=True),
        # NULL on rows migrated from version 1, which did not record them.
        Column("created_at", Double(), nullable=True),
        Column("updated_at", Double(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    # `prune` takes the oldest sessions a batch at a time; the id makes each key unique, so a
    # dry run can go on after the last one it counted.
    updated = Index(f"{p}sessions_updated", sessions.c.updated_at, sessions.c.session_id)
    schema = Table(
        f"{p}schema",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("version", Integer(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return Tables(metadata, messages, sessions, schema, sqlite_system, updated, mysql_system)


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the provider runs, for one dialect.

    Bound parameters: `sid` session id, `n` records in the batch, `ttl` seconds (or None),
    `count` a message count, `k` rows to skip, `head` a key, `limit`, `ids` message or
    session ids, `cursor` a message id, `lo`/`hi` session id bounds, `cutoff` and `after_t`
    epoch seconds, `after_id` a session id, `k_i`/`a_i`/`b_i` keys, and
    `session_id`/`message_id`/`role`/`data` per record.
    """

    touch: Executable
    touch_returns: bool
    session_state: Executable
    insert: Executable
    insert_returns: bool
    insert_many: Callable[[int], Executable] | None
    """MariaDB/MySQL only: one `INSERT IGNORE ... VALUES (...), (...)` of n records, their
    parameters suffixed `_0`, `_1`, ... The driver would otherwise send a many-row batch as
    one statement per row, since `UNHEX(%s)` defeats its multi-row rewrite."""
    purge: Executable
    restart: Executable
    set_count: Executable
    renew: Executable
    trim_probe: Executable
    trim_before: Executable
    delete_session: Executable
    remove: Executable
    reset_count: Executable
    last_id: Executable
    read_last: Executable
    read_all: Executable
    read_system: Executable
    count: Executable
    recount: Executable
    list_page: Callable[[Literal["gt", "ge"] | None, bool, bool], Executable]
    """The live session ids above `lo` (`"gt"`, `"ge"` or no bound), below `hi` (if the
    second argument), by primary key order, at most `limit` (if the third)."""
    info: Executable
    page_first: Executable
    page_after: Executable
    """The cursor's row and the `limit - 1` after it: one indexed lookup, then one range."""
    page_before: Executable
    """The cursor's row and the `limit - 1` before it, newest first."""
    lock_session: Executable
    named: Executable
    """The key and role of each of the session's messages with these ids."""
    neighbours: Callable[[int], Executable]
    """For n keys `k_i`: one row with, per key, the next and the previous key of an entry
    that is not a tool result (so where a run of tool results after `k_i` ends, and the
    owner of a tool result at `k_i`)."""
    delete_ranges: Callable[[int], Executable]
    """Delete keys in n half-open ranges `[a_i, b_i)` of one session."""
    cut_from: Executable
    edited: Executable
    clock: Executable
    stale: Executable
    stale_after: Executable
    lock_stale: Executable
    unrecorded: Executable
    stamp: Executable
    delete_sessions: Executable
    expired_ids: Executable
    purge_many: Executable
    delete_expired: Executable


def build_statements(tables: Tables, dialect: Dialect) -> Statements:
    """Build the statements for `tables` on `dialect` (after its first connect, so MariaDB
    is told from MySQL)."""
    m, s = tables.messages, tables.sessions
    name = dialect.name
    sid = bindparam("sid", type_=ExactString())
    now = EpochNow()
    new_expiry = now + bindparam("ttl", type_=Double())  # NULL when ttl is None
    expired = and_(s.c.expires_at.is_not(None), s.c.expires_at <= now)
    alive = or_(s.c.expires_at.is_(None), s.c.expires_at > now)
    not_expired = ~exists().where(s.c.session_id == sid, expired)
    expired_flag = case((expired, 1), else_=0).label("expired")
    count = bindparam("count", type_=BigInteger())
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    upsert: Any
    if name == "postgresql":
        upsert = postgresql.insert
    elif name == "sqlite":
        upsert = sqlite.insert
    else:
        upsert = mysql.insert

    # Locks the session row (so writers of one session take turns), renews the ttl and,
    # for a non-empty batch, `updated_at` (the caller rolls back a batch that stored
    # nothing); an expired row is left as it is so the caller sees it and starts afresh.
    base = upsert(s).values(
        session_id=sid,
        message_count=bindparam("n", type_=BigInteger()),
        expires_at=new_expiry,
        created_at=now,
        updated_at=now,
    )
    proposed = base.inserted if name not in ("postgresql", "sqlite") else base.excluded
    # Listed in this order on purpose: MySQL applies assignments left to right, so
    # `expires_at` must change after the others have been decided from its old value.
    changes = [
        (
            "message_count",
            case((expired, s.c.message_count), else_=s.c.message_count + proposed.message_count),
        ),
        (
            "updated_at",
            case(
                (expired, s.c.updated_at),
                (proposed.message_count > 0, now),
                else_=s.c.updated_at,
            ),
        ),
        (
            "expires_at",
            case(
                (expired, s.c.expires_at), else_=func.coalesce(proposed.expires_at, s.c.expires_at)
            ),
        ),
    ]
    # MySQL proper has no RETURNING; it reads the row back in a second statement.
    touch_returns = bool(dialect.insert_returning)
    if name in ("postgresql", "sqlite"):
        touch: Any = base.on_conflict_do_update(index_elements=[s.c.session_id], set_=dict(changes))
    else:
        touch = base.on_duplicate_key_update(changes)
    if touch_returns:
        touch = touch.returning(s.c.message_count, expired_flag)

    record = {
        "session_id": bindparam("session_id", type_=ExactString()),
        "message_id": bindparam("message_id", type_=ExactString()),
        "role": bindparam("role", type_=String()),
        "data": bindparam("data", type_=m.c.data.type),
    }
    # asyncpg reports no row count for a many-row insert, so PostgreSQL counts returned keys.
    insert_returns = name == "postgresql"
    if name in ("postgresql", "sqlite"):
        add: Any = (
            upsert(m)
            .values(record)
            .on_conflict_do_nothing(index_elements=[m.c.session_id, m.c.message_id])
        )
    else:
        add = insert(m).values(record).prefix_with("IGNORE")
    insert_many: Callable[[int], Executable] | None = None
    if name not in ("postgresql", "sqlite"):

        @functools.lru_cache(maxsize=64)
        def insert_many(n: int) -> Executable:
            rows = [
                {key: bindparam(f"{key}_{i}", type_=param.type) for key, param in record.items()}
                for i in range(n)
            ]
            return insert(m).values(rows).prefix_with("IGNORE")

    if insert_returns:
        add = add.returning(m.c.id)

    # Not ORDER BY session_id, id: MariaDB then sorts the whole session instead of reading
    # the (session_id, id) index backwards.
    newest_first = m.c.id.desc()
    oldest_first = m.c.id
    by_key = m.c.session_id == sid
    cut = (
        select(m.c.id)
        .where(by_key)
        .order_by(oldest_first)
        .limit(1)
        .offset(bindparam("k", type_=BigInteger()))
        .scalar_subquery()
    )
    later = m.alias("later")
    head = (
        select(later.c.id)
        .where(later.c.session_id == sid, later.c.id >= cut, later.c.role != "tool")
        .order_by(later.c.id)
        .limit(1)
        .scalar_subquery()
    )
    listed = select(s.c.session_id).where(s.c.message_count > 0, alive)

    @functools.lru_cache(maxsize=16)
    def list_page(lower: Literal["gt", "ge"] | None, upper: bool, limited: bool) -> Executable:
        lo, hi = bindparam("lo", type_=ExactString()), bindparam("hi", type_=ExactString())
        query = listed
        if lower == "gt":
            query = query.where(s.c.session_id > lo)
        elif lower == "ge":
            query = query.where(s.c.session_id >= lo)
        if upper:
            query = query.where(s.c.session_id < hi)
        query = query.order_by(asc(s.c.session_id))
        return query.limit(bindparam("limit", type_=BigInteger())) if limited else query

    limit = bindparam("limit", type_=BigInteger())
    session_key = next(i for i in m.indexes if i.name == f"{m.name}_session_key")

    def walk_session_key(query: Select[Any], table: FromClause) -> Select[Any]:
        # A key bound from the cursor plus ORDER BY key LIMIT n: MariaDB otherwise walks the
        # session from its end (or the table's primary key) instead of seeking the range,
        # which costs the session's length (170 ms, not 1 ms, at 100,000 messages).
        hint = f"FORCE INDEX ({session_key.name})"
        return query.with_hint(table, hint, "mysql").with_hint(table, hint, "mariadb")

    page = select(m.c.message_id, m.c.data)
    pointed = m.alias("pointed")
    cursor_key = (
        select(pointed.c.id)
        .where(
            pointed.c.session_id == sid,
            pointed.c.message_id == bindparam("cursor", type_=ExactString()),
        )
        .scalar_subquery()
    )

    @functools.lru_cache(maxsize=128)
    def neighbours(n: int) -> Executable:
        # Uncorrelated subqueries on bound keys: MariaDB seeks a range for each, where a
        # subquery correlated to a row of several walks the session from its start.
        columns = []
        for i in range(n):
            key = bindparam(f"k_{i}", type_=BigInteger())
            after = select(m.c.id).where(by_key, m.c.id > key, m.c.role != "tool")
            before = select(m.c.id).where(by_key, m.c.id < key, m.c.role != "tool")
            columns += [
                walk_session_key(after.order_by(oldest_first).limit(1), m).scalar_subquery(),
                walk_session_key(before.order_by(newest_first).limit(1), m).scalar_subquery(),
            ]
        return select(*columns)

    @functools.lru_cache(maxsize=64)
    def delete_ranges(n: int) -> Executable:
        return delete(m).where(
            by_key,
            or_(
                *(
                    and_(
                        m.c.id >= bindparam(f"a_{i}", type_=BigInteger()),
                        m.c.id < bindparam(f"b_{i}", type_=BigInteger()),
                    )
                    for i in range(n)
                )
            ),
        )

    cutoff: BindParameter[float] = bindparam("cutoff", type_=Double())
    after_t: BindParameter[float] = bindparam("after_t", type_=Double())
    stale_live = and_(s.c.updated_at < cutoff, s.c.message_count > 0, alive)
    stale = (
        select(s.c.session_id, s.c.updated_at)
        .where(stale_live)
        .order_by(s.c.updated_at, s.c.session_id)
        .limit(BATCH_SIZE)
    )
    return Statements(
        touch=touch,
        touch_returns=touch_returns,
        session_state=select(s.c.message_count, expired_flag).where(s.c.session_id == sid),
        insert=add,
        insert_returns=insert_returns,
        insert_many=insert_many,
        purge=delete(m).where(by_key),
        restart=update(s)
        .where(s.c.session_id == sid)
        .values(message_count=count, expires_at=new_expiry, created_at=now, updated_at=now),
        set_count=update(s).where(s.c.session_id == sid).values(message_count=count),
        renew=update(s).where(s.c.session_id == sid, alive).values(expires_at=new_expiry),
        trim_probe=select(cut.label("cut"), head.label("head")),
        trim_before=delete(m).where(by_key, m.c.id < bindparam("head", type_=BigInteger())),
        delete_session=delete(s).where(s.c.session_id == sid),
        remove=delete(m).where(by_key, m.c.message_id.in_(ids)),
        # In this order for MySQL (see `changes`): `expires_at` last.
        reset_count=update(s)
        .where(s.c.session_id == sid)
        .ordered_values(
            (s.c.message_count, count),
            (s.c.created_at, case((expired, now), else_=s.c.created_at)),
            (s.c.updated_at, now),
            (s.c.expires_at, case((expired, None), else_=s.c.expires_at)),
        ),
        last_id=select(m.c.message_id).where(by_key, not_expired).order_by(newest_first).limit(1),
        read_last=select(m.c.data).where(by_key, not_expired).order_by(newest_first).limit(limit),
        read_all=select(m.c.data).where(by_key, not_expired).order_by(oldest_first),
        read_system=select(m.c.data)
        .where(by_key, m.c.role == SYSTEM_ROLE, not_expired)
        .order_by(oldest_first),
        count=select(s.c.message_count).where(s.c.session_id == sid, alive),
        recount=select(func.count()).select_from(m).where(by_key),
        list_page=list_page,
        info=select(s.c.message_count, s.c.created_at, s.c.updated_at).where(
            s.c.session_id == sid, s.c.message_count > 0, alive
        ),
        page_first=page.where(by_key, not_expired).order_by(oldest_first).limit(limit),
        page_after=walk_session_key(
            page.where(by_key, m.c.id >= cursor_key, not_expired)
            .order_by(oldest_first)
            .limit(limit),
            m,
        ),
        page_before=walk_session_key(
            page.where(by_key, m.c.id <= cursor_key, not_expired)
            .order_by(newest_first)
            .limit(limit),
            m,
        ),
        lock_session=select(s.c.message_count, expired_flag)
        .where(s.c.session_id == sid)
        .with_for_update(),
        named=select(m.c.id, m.c.message_id, m.c.role).where(by_key, m.c.message_id.in_(ids)),
        neighbours=neighbours,
        delete_ranges=delete_ranges,
        cut_from=delete(m).where(by_key, m.c.id >= bindparam("head", type_=BigInteger())),
        edited=update(s).where(s.c.session_id == sid).values(message_count=count, updated_at=now),
        clock=select(now),
        stale=stale,
        # Keyset: after the (updated_at, session_id) of the last session counted.
        stale_after=stale.where(
            s.c.updated_at >= after_t,
            or_(
                s.c.updated_at > after_t,
                s.c.session_id > bindparam("after_id", type_=ExactString()),
            ),
        ),
        lock_stale=select(s.c.session_id)
        .where(s.c.session_id.in_(ids), stale_live)
        .order_by(s.c.session_id)
        .with_for_update(),
        unrecorded=select(s.c.session_id).where(s.c.updated_at.is_(None)).limit(BATCH_SIZE),
        stamp=update(s)
        .where(s.c.session_id.in_(ids), s.c.updated_at.is_(None))
        .values(updated_at=now),
        delete_sessions=delete(s).where(s.c.session_id.in_(ids)),
        expired_ids=select(s.c.session_id).where(expired).limit(BATCH_SIZE).with_for_update(),
        purge_many=delete(m).where(m.c.session_id.in_(ids)),
        delete_expired=delete(s).where(s.c.session_id.in_(ids), expired),
    )


# -- setup and upgrade --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a read-only look at the tables found."""

    has_schema: bool
    """Whether `<prefix>schema` exists."""
    version: int | None
    """The version row's number (None: no row)."""
    missing_tables: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    """Version 2 columns absent from `<prefix>sessions`, as `table.column`."""
    missing_indexes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether nothing was found missing."""
        return not (self.missing_tables or self.missing_columns or self.missing_indexes)


def read_schema_state(connection: Connection, tables: Tables, *, full: bool) -> SchemaState:
    """Look at the tables without writing: the version row and, with `full` (or when that
    row is missing or old), which tables, version 2 columns and indexes are missing."""
    inspector = inspect(connection)
    has_schema = bool(inspector.has_table(tables.schema.name))
    found = None
    if has_schema:
        found = connection.execute(
            select(tables.schema.c.version).where(tables.schema.c.name == SCHEMA_NAME)
        ).scalar()
    if found == SCHEMA_VERSION and not full:
        return SchemaState(has_schema, found)
    state = SchemaState(has_schema, found)
    for table in tables.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            state.missing_tables.append(table.name)
    sessions = tables.sessions.name
    if sessions not in state.missing_tables:
        columns = {column["name"] for column in inspector.get_columns(sessions)}
        state.missing_columns.extend(
            f"{sessions}.{name}" for name in _ADDED_IN_2 if name not in columns
        )
        if tables.updated_index.name not in _index_names(inspector, sessions):
            state.missing_indexes.append(str(tables.updated_index.name))
    messages = tables.messages.name
    system_index = tables.system_index(connection.dialect.name)
    if (
        system_index is not None
        and messages not in state.missing_tables
        and system_index.name not in _index_names(inspector, messages)
    ):
        state.missing_indexes.append(str(system_index.name))
    return state


def upgrade_schema(connection: Connection, tables: Tables) -> None:
    """Create what is missing, bring version 1 tables to version 2 and record the version.

    Run it in a write transaction. Every step checks first, so processes doing it at once
    end up with one set of tables: on PostgreSQL the locked version row makes them take
    turns; elsewhere a process that loses a race fails, and the caller runs it again.

    Raises:
        SchemaMismatch: The version row holds a version this memweave does not read.
    """
    read_version = select(tables.schema.c.version).where(tables.schema.c.name == SCHEMA_NAME)
    if inspect(connection).has_table(tables.schema.name):
        found = connection.execute(read_version.with_for_update()).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaMismatch(found, SCHEMA_VERSION, f"table {tables.schema.name!r}")
    tables.metadata.create_all(connection)
    dialect = connection.dialect
    # MySQL proper lacks IF NOT EXISTS here; the check before each step covers it, and a
    # race lost to another process fails this transaction, which the caller runs again.
    guarded = dialect.name != "mysql" or bool(getattr(dialect, "is_mariadb", False))
    state = read_schema_state(connection, tables, full=True)
    preparer = dialect.identifier_preparer
    sessions = tables.sessions
    for name in _ADDED_IN_2:
        if f"{sessions.name}.{name}" in state.missing_columns:
            column = sessions.c[name]
            exists_clause = "IF NOT EXISTS " if guarded and dialect.name != "sqlite" else ""
            connection.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(sessions)} ADD COLUMN {exists_clause}"
                f"{preparer.format_column(column)} {column.type.compile(dialect=dialect)}"
            )
    for index in (tables.updated_index, tables.system_index(dialect.name)):
        if index is not None and index.name in state.missing_indexes:
            connection.execute(CreateIndex(index, if_not_exists=guarded))
    params = {"name": SCHEMA_NAME, "version": SCHEMA_VERSION}
    schema = tables.schema
    if dialect.name in ("postgresql", "sqlite"):
        write: Any = (
            postgresql.insert(schema) if dialect.name == "postgresql" else sqlite.insert(schema)
        ).on_conflict_do_nothing()
    else:
        write = insert(schema).prefix_with("IGNORE")
    connection.execute(write.values(params))
    connection.execute(
        update(schema)
        .where(schema.c.name == SCHEMA_NAME, schema.c.version < SCHEMA_VERSION)
        .values(version=SCHEMA_VERSION)
    )
    found = connection.execute(read_version).scalar()
    if found != SCHEMA_VERSION:
        raise SchemaMismatch(found, SCHEMA_VERSION, f"table {schema.name!r}")


def _index_names(inspector: Any, table: str) -> set[str]:
    return {str(index["name"]) for index in inspector.get_indexes(table)}
