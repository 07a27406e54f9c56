"""Tables, column types and prebuilt statements of `SQLChatHistoryProvider`.

Three tables per prefix (`memweave_` by default):

- `<prefix>messages`: one row per stored message. `id` is the database-generated key that
  orders a session; `(session_id, message_id)` is unique, which makes appends idempotent;
  the index on `(session_id, id)` serves `limit=N` reads and trims from either end.
- `<prefix>sessions`: one row per session with its message count and `expires_at` (seconds
  since the epoch on the database's clock, or NULL), so counting, listing and ttl checks never
  scan messages.
- `<prefix>schema`: the version row that guards against reading a different layout.

Statements are built once per table set and dialect, from Core constructs with bound
parameters, so SQLAlchemy's compiled cache serves every call after the first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
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
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler, TypeCompiler
from sqlalchemy.sql.expression import BindParameter, ColumnElement, Executable, FunctionElement
from sqlalchemy.types import TypeDecorator

from memweave.errors import ConfigurationError
from memweave.messages import MAX_ID_LENGTH

# The role as SQL text, not a bound parameter: a partial index on role = 'system' serves
# only queries whose predicate says so literally (SQLite; PostgreSQL's generic plans).
SYSTEM_ROLE: ColumnElement[str] = literal_column("'system'")

__all__ = [
    "PURGE_BATCH",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "EpochNow",
    "ExactString",
    "MySQLBlob",
    "Statements",
    "Tables",
    "build_metadata",
    "build_statements",
    "tables_for",
]

SCHEMA_VERSION = 1
"""Version of the table layout written by this memweave."""

SCHEMA_NAME = "chat_history"
"""Key of the version row in `<prefix>schema`."""

PURGE_BATCH = 500
"""Expired sessions deleted per transaction by `purge_expired`."""

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


def build_metadata(table_prefix: str = "memweave_") -> MetaData:
    """Return the `MetaData` holding the tables for `table_prefix`, for Alembic migrations.

    The same object is returned for the same prefix.

    Raises:
        ConfigurationError: The prefix is not 1-32 letters, digits and underscores.
    """
    return tables_for(table_prefix).metadata


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
    sessions = Table(
        f"{p}sessions",
        metadata,
        Column("session_id", ExactString(), primary_key=True),
        Column("message_count", BigInteger(), nullable=False, default=0),
        Column("expires_at", Double(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    schema = Table(
        f"{p}schema",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("version", Integer(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return Tables(metadata, messages, sessions, schema, sqlite_system)


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the provider runs, for one dialect.

    Bound parameters: `sid` session id, `n` records in the batch, `ttl` seconds (or None),
    `count` a message count, `k` rows to skip, `head` a key, `limit`, `ids` message ids,
    `name`/`version` the schema row, and `session_id`/`message_id`/`role`/`data` per record.
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
    list_all: Executable
    list_range: Executable
    list_from: Executable
    recount: Executable
    expired_ids: Executable
    purge_many: Executable
    delete_expired: Executable
    version_read: Executable
    version_write: Executable


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
    upsert: Any
    if name == "postgresql":
        upsert = postgresql.insert
    elif name == "sqlite":
        upsert = sqlite.insert
    else:
        upsert = mysql.insert

    # Locks the session row (so writers of one session take turns) and renews the ttl; an
    # expired row is left as it is so the caller sees it and starts the session afresh.
    base = upsert(s).values(
        session_id=sid, message_count=bindparam("n", type_=BigInteger()), expires_at=new_expiry
    )
    proposed = base.inserted if name not in ("postgresql", "sqlite") else base.excluded
    # Listed in this order on purpose: MySQL applies assignments left to right, so
    # `expires_at` must change after the count has been decided from its old value.
    changes = [
        (
            "message_count",
            case((expired, s.c.message_count), else_=s.c.message_count + proposed.message_count),
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
    cut = (
        select(m.c.id)
        .where(m.c.session_id == sid)
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
    lo, hi = bindparam("lo", type_=ExactString()), bindparam("hi", type_=ExactString())
    listed = select(s.c.session_id).where(s.c.message_count > 0, alive)
    if name in ("postgresql", "sqlite"):
        version_write: Any = upsert(tables.schema).on_conflict_do_nothing()
    else:
        version_write = insert(tables.schema).prefix_with("IGNORE")
    by_key = m.c.session_id == sid
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
        .values(message_count=bindparam("count", type_=BigInteger()), expires_at=new_expiry),
        set_count=update(s)
        .where(s.c.session_id == sid)
        .values(message_count=bindparam("count", type_=BigInteger())),
        renew=update(s).where(s.c.session_id == sid, alive).values(expires_at=new_expiry),
        trim_probe=select(cut.label("cut"), head.label("head")),
        trim_before=delete(m).where(by_key, m.c.id < bindparam("head", type_=BigInteger())),
        delete_session=delete(s).where(s.c.session_id == sid),
        remove=delete(m).where(by_key, m.c.message_id.in_(bindparam("ids", expanding=True))),
        reset_count=update(s)
        .where(s.c.session_id == sid)
        .values(
            message_count=bindparam("count", type_=BigInteger()),
            expires_at=case((expired, None), else_=s.c.expires_at),
        ),
        last_id=select(m.c.message_id).where(by_key, not_expired).order_by(newest_first).limit(1),
        read_last=select(m.c.data)
        .where(by_key, not_expired)
        .order_by(newest_first)
        .limit(bindparam("limit", type_=BigInteger())),
        read_all=select(m.c.data).where(by_key, not_expired).order_by(oldest_first),
        read_system=select(m.c.data)
        .where(by_key, m.c.role == SYSTEM_ROLE, not_expired)
        .order_by(oldest_first),
        count=select(s.c.message_count).where(s.c.session_id == sid, alive),
        list_all=listed,
        list_range=listed.where(s.c.session_id >= lo, s.c.session_id < hi),
        list_from=listed.where(s.c.session_id >= lo),
        recount=select(func.count()).select_from(m).where(by_key),
        expired_ids=select(s.c.session_id).where(expired).limit(PURGE_BATCH).with_for_update(),
        purge_many=delete(m).where(m.c.session_id.in_(bindparam("ids", expanding=True))),
        delete_expired=delete(s).where(
            s.c.session_id.in_(bindparam("ids", expanding=True)), expired
        ),
        version_read=select(tables.schema.c.version).where(
            tables.schema.c.name == bindparam("name", type_=String())
        ),
        version_write=version_write.values(
            name=bindparam("name", type_=String()), version=bindparam("version", type_=Integer())
        ),
    )
