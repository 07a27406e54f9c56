"""The tables of `MemweaveCheckpointSaver`'s SQL storage (see `_saver_sql`), for your own
migrations too, and the SQLAlchemy statements of its reads."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.expression import Select

from memweave.errors import ConfigurationError
from memweave.integrations.langgraph._records import Blob, Cursor, Head, Write, key_of
from memweave.providers._sql_schema import ExactString, MySQLBlob

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SaverTables",
    "assemble",
    "details_query",
    "heads_query",
    "saver_tables",
]

SCHEMA_VERSION = 1
"""Version of the checkpoint tables' layout written by this memweave."""

SCHEMA_NAME = "langgraph_checkpoints"
"""Key of the version row in `<prefix>schema`."""

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def _blob_type() -> Any:
    return LargeBinary().with_variant(MySQLBlob(), "mysql", "mariadb")


@dataclass(frozen=True, slots=True)
class SaverTables:
    """The tables of one prefix."""

    metadata: MetaData
    checkpoints: Table
    writes: Table
    blobs: Table
    schema: Table


@functools.cache
def saver_tables(table_prefix: str = "memweave_") -> SaverTables:
    """Return the checkpoint tables for `table_prefix`, for your own migrations.

    Raises:
        ConfigurationError: The prefix is not 1-32 ASCII letters, digits or underscores.
    """
    if not isinstance(table_prefix, str) or not _PREFIX.fullmatch(table_prefix):
        raise ConfigurationError(
            "table_prefix must be 1-32 ASCII letters, digits or underscores, not starting "
            f"with a digit, got {table_prefix!r}"
        )
    p = f"{table_prefix}lg_"
    md = MetaData()
    options: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

    def keys() -> list[Column[Any]]:
        return [
            Column("thread", String(32), primary_key=True),
            Column("ns", String(32), primary_key=True),
        ]

    checkpoints = Table(
        f"{p}checkpoints",
        md,
        *keys(),
        Column("checkpoint_id", ExactString(), primary_key=True),
        Column("thread_id", Text(), nullable=False),
        Column("checkpoint_ns", Text(), nullable=False),
        Column("parent_id", ExactString(), nullable=True),
        Column("run", String(32), nullable=True),
        Column("delta", Boolean(), nullable=False),
        Column("refs", Text(), nullable=False),
        Column("document", _blob_type(), nullable=False),
        Column("meta", _blob_type(), nullable=False),
        **options,
    )
    Index(f"{p}checkpoints_run", checkpoints.c.run)
    writes = Table(
        f"{p}writes",
        md,
        *keys(),
        Column("checkpoint_id", ExactString(), primary_key=True),
        Column("task_id", ExactString(), primary_key=True),
        Column("idx", Integer(), primary_key=True, autoincrement=False),
        Column("channel", Text(), nullable=False),
        Column("type", String(64), nullable=False),
        Column("data", _blob_type(), nullable=False),
        Column("task_path", Text(), nullable=False),
        **options,
    )
    blobs = Table(
        f"{p}blobs",
        md,
        *keys(),
        Column("blob_key", String(32), primary_key=True),
        Column("type", String(64), nullable=False),
        Column("data", _blob_type(), nullable=True),
        **options,
    )
    schema = Table(
        f"{table_prefix}schema",
        md,
        Column("name", String(64), primary_key=True),
        Column("version", Integer(), nullable=False),
        **options,
    )
    return SaverTables(md, checkpoints, writes, blobs, schema)


def heads_query(
    tables: SaverTables,
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    after: Cursor | None,
) -> tuple[Select[Any], dict[str, Any]]:
    """The query of checkpoint rows newest first (see `CheckpointStorage.read`), and its
    parameters; its columns are a `Head`'s, `refs` last."""
    cp = tables.checkpoints
    query = select(
        cp.c.thread_id,
        cp.c.checkpoint_ns,
        cp.c.checkpoint_id,
        cp.c.parent_id,
        cp.c.document,
        cp.c.meta,
        cp.c.refs,
    )
    params: dict[str, Any] = {}
    if thread_id is not None:
        query = query.where(cp.c.thread == bindparam("thread"))
        params["thread"] = key_of(thread_id)
    if checkpoint_ns is not None:
        query = query.where(cp.c.ns == bindparam("ns"))
        params["ns"] = key_of(checkpoint_ns)
    if checkpoint_id is not None:
        query = query.where(cp.c.checkpoint_id == bindparam("checkpoint_id"))
        params["checkpoint_id"] = checkpoint_id
    if after is not None:
        query = query.where(_after(cp, after))
    return query.order_by(cp.c.checkpoint_id.desc(), cp.c.ns.desc(), cp.c.thread.desc()), params


def _after(cp: Table, cursor: Cursor) -> Any:
    """Rows after `cursor` in (checkpoint id, namespace, thread) descending order."""
    below = cp.c.checkpoint_id < cursor.checkpoint_id
    if not cursor.ns_key and not cursor.thread_key:
        return below
    same = cp.c.checkpoint_id == cursor.checkpoint_id
    return or_(
        below,
        and_(
            same,
            or_(
                cp.c.ns < cursor.ns_key,
                and_(cp.c.ns == cursor.ns_key, cp.c.thread < cursor.thread_key),
            ),
        ),
    )


def details_query(tables: SaverTables, thread: str, heads: Sequence[Head]) -> Any:
    """The writes and blobs of `heads` (all of the thread keyed `thread`) in one statement,
    as the rows `assemble` takes."""
    wr, bl = tables.writes, tables.blobs
    namespaces = sorted({h.ns_key for h in heads})
    ids = sorted({h.checkpoint_id for h in heads})
    keys = sorted({key for h in heads for key in h.refs})
    text, number = String(), Integer()
    writes = select(
        literal(0, number).label("kind"),
        wr.c.ns,
        wr.c.checkpoint_id,
        wr.c.task_id,
        wr.c.idx,
        wr.c.channel,
        wr.c.type,
        wr.c.data,
        wr.c.task_path,
    ).where(wr.c.thread == thread, wr.c.ns.in_(namespaces), wr.c.checkpoint_id.in_(ids))
    if not keys:
        return writes
    blobs = select(
        literal(1, number),
        bl.c.ns,
        bl.c.blob_key,
        cast(null(), text),
        cast(null(), number),
        cast(null(), text),
        bl.c.type,
        bl.c.data,
        cast(null(), text),
    ).where(bl.c.thread == thread, bl.c.ns.in_(namespaces), bl.c.blob_key.in_(keys))
    return union_all(writes, blobs)


def assemble(heads: Sequence[Head], rows: Sequence[Sequence[Any]]) -> None:
    """Hand the rows of a details query (writes, kind 0; blobs, kind 1) to their heads."""
    wanted = {(h.ns_key, h.checkpoint_id): h for h in heads}
    blobs: dict[tuple[str, str], Blob] = {}
    for kind, ns, name, task_id, idx, channel, type_, data, path in rows:
        if kind == 0:
            owner = wanted.get((ns, name))
            if owner is not None:
                owner.writes.append(Write(task_id, idx, channel, type_, bytes(data), path))
        else:
            blobs[(ns, name)] = Blob(name, type_, None if data is None else bytes(data))
    for head in heads:
        for key in head.refs:
            blob = blobs.get((head.ns_key, key))
            if blob is not None:
                head.blobs[key] = blob
