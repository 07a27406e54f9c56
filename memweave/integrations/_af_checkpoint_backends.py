"""Where `MemweaveCheckpointStorage` keeps Agent Framework checkpoints: a SQL table or Redis keys.

Key names and SQL key columns are digests of the checkpoint id and the workflow name (see
`digest`), so no character of either reaches a key name, a pattern or a collation. A
workflow's checkpoints are ordered by their timestamp (then by save order).
"""

from __future__ import annotations

import contextlib
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from memweave._urls import mask_url
from memweave.errors import (
    ConfigurationError,
)

__all__ = [
    "CheckpointBackend",
    "RedisCheckpointBackend",
    "SQLCheckpointBackend",
    "StoredCheckpoint",
    "digest",
]


def digest(text: str) -> str:
    """32 hex characters standing for `text` in key names and key columns."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One checkpoint as stored."""

    checkpoint_id: str
    workflow_name: str
    timestamp: float
    """The checkpoint's timestamp in seconds since the epoch (its order in the workflow)."""
    data: bytes


class CheckpointBackend(ABC):
    """The storage primitives; each is one atomic step."""

    url: str
    """Where the checkpoints live, without a password."""

    @abstractmethod
    async def save(self, checkpoint: StoredCheckpoint) -> None:
        """Store (or replace) the checkpoint with this id."""

    @abstractmethod
    async def load(self, checkpoint_id: str) -> bytes | None:
        """The stored document, or None."""

    @abstractmethod
    async def workflow(self, workflow_name: str, *, latest: bool = False) -> list[bytes]:
        """The workflow's documents, oldest first; with `latest`, only those sharing the
        newest timestamp."""

    @abstractmethod
    async def ids(self, workflow_name: str) -> list[str]:
        """The workflow's checkpoint ids, oldest first."""

    @abstractmethod
    async def delete(self, checkpoint_id: str) -> bool:
        """Delete one checkpoint; whether it existed."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what was built here."""


class SQLCheckpointBackend(CheckpointBackend):
    """One row per checkpoint in `<prefix>af_checkpoints`; each call is one transaction.

    Args:
        url: A SQLAlchemy URL, or None with `engine`.
        engine: An `AsyncEngine` to use instead; left open.
        table_prefix: First part of the table name.
    """

    def __init__(self, url: str | None, *, engine: Any = None, table_prefix: str) -> None:
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
            Text,
        )

        from memweave.providers._resilience import DEFAULT_TIMEOUT
        from memweave.providers._sql_engine import Engines, statement_limit
        from memweave.providers._sql_schema import MySQLBlob
        from memweave.providers._sql_schema import tables_for as _check_prefix

        _check_prefix(table_prefix)  # the same rule as every memweave table prefix
        name = f"{table_prefix}af_checkpoints"
        self._table = Table(
            name,
            MetaData(),
            Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
            Column("id_key", String(32), nullable=False, unique=True),
            Column("checkpoint_id", Text(), nullable=False),
            Column("workflow_key", String(32), nullable=False),
            Column("workflow_name", Text(), nullable=False),
            Column("ts", Double(), nullable=False),
            Column("data", LargeBinary().with_variant(MySQLBlob(), "mysql", "mariadb")),
            mysql_engine="InnoDB",
            mysql_charset="utf8mb4",
        )
        Index(f"{name}_workflow", self._table.c.workflow_key, self._table.c.ts, self._table.c.seq)
        self._engines = Engines(url, engine, owner="MemweaveCheckpointStorage")
        self.url = self._engines.url
        self._statement_limit = statement_limit(url if engine is None else None, DEFAULT_TIMEOUT)
        self._ready = False

    async def _setup(self) -> Any:
        from memweave.integrations._sql_retry import set_up_racing

        link = self._engines.get()
        if self._ready:
            return link
        async with link.setup_lock:
            if not self._ready:

                async def create() -> None:
                    async with link.write_lock, link.engine.begin() as conn:
                        await conn.run_sync(self._table.metadata.create_all)

                await set_up_racing(create)
                self._ready = True
        return link

    def _upsert(self) -> Any:
        from sqlalchemy.dialects import mysql, postgresql, sqlite

        t = self._table
        kept = ("checkpoint_id", "workflow_key", "workflow_name", "ts", "data")
        name = self._engines.dialect_name
        if name in ("sqlite", "postgresql"):
            statement = (sqlite if name == "sqlite" else postgresql).insert(t)
            return statement.on_conflict_do_update(
                index_elements=[t.c.id_key], set_={c: statement.excluded[c] for c in kept}
            )
        statement = mysql.insert(t)
        return statement.on_duplicate_key_update({c: statement.inserted[c] for c in kept})

    async def save(self, checkpoint: StoredCheckpoint) -> None:
        """One upsert on `id_key`."""
        row = {
            "id_key": digest(checkpoint.checkpoint_id),
            "checkpoint_id": checkpoint.checkpoint_id,
            "workflow_key": digest(checkpoint.workflow_name),
            "workflow_name": checkpoint.workflow_name,
            "ts": checkpoint.timestamp,
            "data": checkpoint.data,
        }
        with self._map_errors():
            link = await self._setup()
            async with link.write_lock, link.engine.begin() as conn:
                await conn.execute(self._upsert(), row)

    async def _select(self, query: Any) -> list[Any]:
        with self._map_errors():
            link = await self._setup()
            async with link.read_lock, link.engine.connect() as conn:
                return list(await conn.execute(query))

    async def load(self, checkpoint_id: str) -> bytes | None:
        """One indexed query."""
        from sqlalchemy import select

        t = self._table
        rows = await self._select(select(t.c.data).where(t.c.id_key == digest(checkpoint_id)))
        return bytes(rows[0][0]) if rows else None

    async def workflow(self, workflow_name: str, *, latest: bool = False) -> list[bytes]:
        """One indexed query (a subquery finds the newest timestamp)."""
        from sqlalchemy import func, select

        t = self._table
        workflow_key = digest(workflow_name)
        query = select(t.c.data).where(t.c.workflow_key == workflow_key)
        if latest:
            newest = select(func.max(t.c.ts)).where(t.c.workflow_key == workflow_key)
            query = query.where(t.c.ts == newest.scalar_subquery())
        rows = await self._select(query.order_by(t.c.ts, t.c.seq))
        return [bytes(row[0]) for row in rows]

    async def ids(self, workflow_name: str) -> list[str]:
        """One indexed query."""
        from sqlalchemy import select

        t = self._table
        query = (
            select(t.c.checkpoint_id)
            .where(t.c.workflow_key == digest(workflow_name))
            .order_by(t.c.ts, t.c.seq)
        )
        return [str(row[0]) for row in await self._select(query)]

    async def delete(self, checkpoint_id: str) -> bool:
        """One `DELETE`."""
        from sqlalchemy import delete

        t = self._table
        with self._map_errors():
            link = await self._setup()
            async with link.write_lock, link.engine.begin() as conn:
                result = await conn.execute(delete(t).where(t.c.id_key == digest(checkpoint_id)))
        return bool(result.rowcount)

    async def aclose(self) -> None:
        """Dispose of the engines built here."""
        with self._map_errors():
            await self._engines.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        from memweave.providers._sql_errors import map_sql_errors

        with map_sql_errors(
            self.url,
            statement_limit=self._statement_limit,
            bound_to=self._engines.bound_to,
            owner="MemweaveCheckpointStorage",
            schema_hint=f"the checkpoint table {self._table.name!r} is missing or differs",
        ):
            yield


# KEYS: data hash, owner hash, the workflow's sorted set. ARGV: checkpoint id, document,
# workflow key, timestamp, the sorted-set key prefix. A checkpoint saved again under another
# workflow leaves the old one's set (both sets share the hash tag: this stays in one slot).
_SAVE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= ARGV[3] then
  redis.call('ZREM', ARGV[5] .. old, ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
"""

# KEYS: data hash, owner hash. ARGV: checkpoint id, the sorted-set key prefix.
_DELETE = """
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not owner then return 0 end
redis.call('ZREM', ARGV[2] .. owner, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class RedisCheckpointBackend(CheckpointBackend):
    """Checkpoints in Redis under one hash tag `{<prefix>:af}` (one cluster slot, so each
    call is one atomic script or read): a hash of documents by checkpoint id, a hash of each
    checkpoint's workflow digest, and per workflow (`...:wf:<digest>`) a sorted set of
    checkpoint ids scored by timestamp. Ids are hash fields and set members, never key names.

    Args:
        url: `redis://`, `rediss://`, `unix://` or `redis+cluster://`, or None with `client`.
        client: A `redis.asyncio` client to use instead; left open.
        prefix: First part of every key name; no braces, spaces or control characters.
    """

    def __init__(self, url: str | None, *, client: Any = None, prefix: str) -> None:
        import re

        from memweave.providers._redis_client import socket_timeout
        from memweave.providers.redis import DEFAULT_URL, loop_clients

        if not isinstance(prefix, str) or not prefix or re.search(r"[{}\x00-\x20\x7f]", prefix):
            raise ConfigurationError(
                "prefix must be a non-empty str without braces, spaces or control characters, "
                f"got {prefix!r}"
            )

        def link(made: Any) -> Any:
            return made, made.register_script(_SAVE), made.register_script(_DELETE)

        self._links, first = loop_clients(
            url, client, owner="MemweaveCheckpointStorage", link=link, client_of=lambda v: v[0]
        )
        self._prefix = prefix
        self._socket_timeout = socket_timeout(first)
        self.url = (
            mask_url(url if url is not None else DEFAULT_URL)
            if client is None
            else ("redis://(client)")
        )
        tag = f"{{{prefix}:af}}"
        self._data, self._owner, self._workflow = f"{tag}:data", f"{tag}:owner", f"{tag}:wf:"

    async def save(self, checkpoint: StoredCheckpoint) -> None:
        """One script."""
        with self._map_errors():
            _, save, _ = self._links.get()
            workflow_key = digest(checkpoint.workflow_name)
            await save(
                keys=[self._data, self._owner, self._workflow + workflow_key],
                args=[
                    checkpoint.checkpoint_id,
                    checkpoint.data,
                    workflow_key,
                    repr(checkpoint.timestamp),
                    self._workflow,
                ],
            )

    async def load(self, checkpoint_id: str) -> bytes | None:
        """One `HGET`."""
        with self._map_errors():
            client, _, _ = self._links.get()
            value = await client.hget(self._data, checkpoint_id)
        return None if value is None else bytes(value)

    async def _members(self, workflow_name: str, latest: bool) -> list[str]:
        client, _, _ = self._links.get()
        key = self._workflow + digest(workflow_name)
        if latest:
            top = await client.zrevrange(key, 0, 0, withscores=True)
            if not top:
                return []
            score = top[0][1]
            members = await client.zrangebyscore(key, score, score)
        else:
            members = await client.zrange(key, 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def workflow(self, workflow_name: str, *, latest: bool = False) -> list[bytes]:
        """A range of the workflow's sorted set, then one `HMGET`."""
        with self._map_errors():
            members = await self._members(workflow_name, latest)
            if not members:
                return []
            client, _, _ = self._links.get()
            values = await client.hmget(self._data, members)
        return [bytes(value) for value in values if value is not None]

    async def ids(self, workflow_name: str) -> list[str]:
        """One range of the workflow's sorted set."""
        with self._map_errors():
            return await self._members(workflow_name, False)

    async def delete(self, checkpoint_id: str) -> bool:
        """One script."""
        with self._map_errors():
            _, _, delete = self._links.get()
            removed = await delete(
                keys=[self._data, self._owner], args=[checkpoint_id, self._workflow]
            )
        return bool(removed)

    async def aclose(self) -> None:
        """Close the clients built here."""
        with self._map_errors():
            await self._links.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        from memweave.providers._redis_client import map_redis_errors

        with map_redis_errors(
            self.url,
            timeout=self._socket_timeout,
            prefix=self._prefix,
            owner="MemweaveCheckpointStorage",
            bound_to="the client passed in",
        ):
            yield
