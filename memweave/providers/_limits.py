"""How many bytes one stored message may take on each backend, and where each limit comes from.

A message's stored form is its versioned JSON (`memweave._codec`). What a backend can hold
of it is checked in `ChatHistoryProvider.add_messages` before anything is sent, so a message
that can never be stored raises `MessageTooLarge` instead of a lost connection or a server
error that a retry would repeat. Every limit leaves `ROW_ROOM` bytes for what travels with
the entry (session and message ids of up to 256 characters, the role, statement text, a
vector):

- memory: `MEMORY_LIMIT` (64 MiB), a guard chosen for a store that holds everything in
  this process, not a limit of any library.
- SQLite: the connection's `SQLITE_LIMIT_LENGTH` (1,000,000,000 bytes unless lowered), the
  most bytes of one value and of one row.
- PostgreSQL: 1 GiB, the most one `bytea` value and one protocol message may hold.
- MariaDB/MySQL: half the server's `max_allowed_packet` (read once per store), since
  aiomysql sends a statement's parameters inside its text and binary data as hex, two
  characters per byte (PyMySQL writes bytes as `_binary X'..'` the same way). Only the
  binary protocol of server-side prepared statements would avoid the doubling, and neither
  aiomysql nor asyncmy speaks it. About 8 MiB at the default 16 MiB; raise
  `max_allowed_packet` (up to 1 GiB) for more.
- Redis: the server's `proto-max-bulk-len` (`CONFIG GET`, read once per store; 512 MiB, the
  default, where `CONFIG` is not allowed), the most bytes of one argument of a command.
- Chroma: embedded, half of SQLite's 1,000,000,000 bytes, as Chroma's log stores the entry
  escaped inside a JSON text (each `"` and `\\` doubled); on a Chroma server, half its
  default `max_payload_size_bytes` of 40 MiB, as the client sends the entry escaped inside
  the request's JSON.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memweave.errors import MessageTooLarge

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from memweave.providers._records import StoredRecord

__all__ = [
    "CHROMA_EMBEDDED_LIMIT",
    "CHROMA_SERVER_LIMIT",
    "MEMORY_LIMIT",
    "POSTGRES_LIMIT",
    "REDIS_DEFAULT_BULK_LEN",
    "ROW_ROOM",
    "SQLITE_DEFAULT_LENGTH",
    "UNLIMITED",
    "check_sizes",
    "chroma_limit",
    "mysql_limit",
    "redis_limit",
    "sql_limit",
    "sqlite_limit",
]

MiB = 1 << 20

ROW_ROOM = 8 << 10
"""Bytes kept free for what travels with one entry: two ids of up to 256 characters (1 KiB
each as UTF-8, 2 KiB escaped), the role, the statement's text."""

UNLIMITED = 1 << 62
"""The limit of a backend that states none."""

MEMORY_LIMIT = 64 * MiB
"""`InMemoryChatHistoryProvider`'s limit, chosen: large payloads belong elsewhere."""

SQLITE_DEFAULT_LENGTH = 1_000_000_000
"""SQLite's default `SQLITE_MAX_LENGTH`: the most bytes of a string, blob or row."""

POSTGRES_LIMIT = (1 << 30) - 1 - ROW_ROOM
"""PostgreSQL's: a `bytea` value, and the protocol message carrying it in or out, must stay
under 1 GiB (`MaxAllocSize`)."""

REDIS_DEFAULT_BULK_LEN = 512 * MiB
"""Redis's default `proto-max-bulk-len`: the most bytes of one command argument."""

CHROMA_EMBEDDED_LIMIT = (SQLITE_DEFAULT_LENGTH - ROW_ROOM) // 2
"""Embedded Chroma's: its log keeps the document escaped in a JSON text, a SQLite value."""

_CHROMA_SERVER_PAYLOAD = 40 * MiB
_CHROMA_VECTOR_ROOM = 256 << 10  # a 3,072-dimension vector as JSON text, with room to spare

CHROMA_SERVER_LIMIT = (_CHROMA_SERVER_PAYLOAD - _CHROMA_VECTOR_ROOM) // 2
"""A Chroma server's: its default request limit, the document escaped in the JSON body."""


def check_sizes(records: Sequence[StoredRecord], limit: int, *, backend: str) -> None:
    """Raise `MessageTooLarge` for the first record whose stored form is over `limit` bytes.

    The records are the batch as given (before duplicates are dropped), so the error's
    position is the message's index in the caller's batch.
    """
    for position, record in enumerate(records):
        if len(record.data) > limit:
            raise MessageTooLarge(len(record.data), limit, backend=backend, position=position)


def mysql_limit(max_allowed_packet: int) -> int:
    """The limit for a MariaDB/MySQL server with this `max_allowed_packet` (hex doubles it)."""
    return max(0, (max_allowed_packet - ROW_ROOM) // 2)


def sqlite_limit(length_limit: int) -> int:
    """The limit for a SQLite connection whose `SQLITE_LIMIT_LENGTH` is `length_limit`."""
    return max(0, length_limit - ROW_ROOM)


def sql_limit(conn: Connection) -> int:
    """The limit of the PostgreSQL or SQLite database behind `conn` (run with
    `AsyncConnection.run_sync`); MariaDB/MySQL's comes from `mysql_limit`.

    SQLite's length limit is read from the connection when the driver exposes it. A
    dialect memweave does not know has no limit known here.
    """
    name = conn.dialect.name
    if name == "postgresql":
        return POSTGRES_LIMIT
    if name == "sqlite":
        return sqlite_limit(_sqlite_length_limit(conn.connection.driver_connection))
    return UNLIMITED


def _sqlite_length_limit(driver: Any) -> int:
    """`SQLITE_LIMIT_LENGTH` of a `sqlite3` connection, or of the one an aiosqlite
    connection wraps; SQLite's default when the driver hides it."""
    raw = driver if isinstance(driver, sqlite3.Connection) else getattr(driver, "_conn", None)
    if isinstance(raw, sqlite3.Connection):
        with contextlib.suppress(sqlite3.Error):
            return raw.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    return SQLITE_DEFAULT_LENGTH


async def redis_limit(client: Any) -> int:
    """The limit of the Redis server (or every node of the Cluster) behind `client`.

    A server that refuses `CONFIG GET` (managed services often do) is taken to have the
    default `proto-max-bulk-len`.
    """
    from redis.asyncio import RedisCluster
    from redis.exceptions import RedisClusterException, RedisError

    # redis-py sends CONFIG GET to one random node of a Cluster; every node replicates or
    # serves the entry, so ask them all.
    where = {"target_nodes": RedisCluster.ALL_NODES} if isinstance(client, RedisCluster) else {}
    try:
        reply = await client.config_get("proto-max-bulk-len", **where)
    except (RedisError, RedisClusterException):
        return REDIS_DEFAULT_BULK_LEN
    values = _bulk_lens(reply)
    return min(values) if values else REDIS_DEFAULT_BULK_LEN


def _bulk_lens(reply: Any) -> list[int]:
    """The `proto-max-bulk-len` values in a `CONFIG GET` reply: one server's `{name: value}`,
    or a cluster client's per-node replies."""
    if not isinstance(reply, dict):
        return []
    out: list[int] = []
    for key, value in reply.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name == "proto-max-bulk-len":
            with contextlib.suppress(TypeError, ValueError):
                out.append(int(value))
        elif isinstance(value, dict):
            out += _bulk_lens(value)
    return out


def chroma_limit(client: Any) -> int:
    """The limit for a Chroma client: embedded, or talking to a server over HTTP.

    A client that does not say which it is gets the server's (smaller) limit.
    """
    try:
        implementation = str(client.get_settings().chroma_api_impl)
    except AttributeError:  # not a chromadb client: assume the smaller limit
        return CHROMA_SERVER_LIMIT
    return CHROMA_SERVER_LIMIT if implementation.endswith("FastAPI") else CHROMA_EMBEDDED_LIMIT
