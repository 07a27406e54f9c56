"""The size limit of one message on each backend, checked against the real store.

A message at the limit is stored and read back equal; one byte more raises
`MessageTooLarge` before anything is sent. Where a server's own setting makes the limit,
the tests start a server of their own with a small setting (Redis) or lower the setting on
a connection of their own (SQLite); MariaDB/MySQL's are in `test_sql_mariadb_limits.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from memweave import ChatMessage, MessageTooLarge
from memweave._codec import encode
from memweave.bench._scale_redis import RedisProcesses, redis_server_available
from memweave.providers import ChatHistoryProvider, InMemoryChatHistoryProvider
from memweave.providers._limits import (
    CHROMA_EMBEDDED_LIMIT,
    CHROMA_SERVER_LIMIT,
    MEMORY_LIMIT,
    POSTGRES_LIMIT,
    REDIS_DEFAULT_BULK_LEN,
    chroma_limit,
    redis_limit,
)
from memweave.providers._sql_engine import check_server
from memweave.providers.sql import SQLChatHistoryProvider
from tests.conformance._harness_chroma import chroma_server_url
from tests.conformance._harness_sql import postgres_url
from tests.conftest import service_unavailable

__all__ = ["chroma_server_url", "postgres_url"]

MiB = 1 << 20
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def sized(size: int) -> ChatMessage:
    """A user message whose stored form is exactly `size` bytes."""
    overhead = len(encode(ChatMessage.user("z", created_at=WHEN))) - 1
    return ChatMessage.user("z" * (size - overhead), created_at=WHEN)


async def check_limit(history: ChatHistoryProvider, limit: int, session: str) -> None:
    """One byte over `limit` is refused before anything is stored; `limit` round-trips."""
    with pytest.raises(MessageTooLarge) as info:
        await history.add_messages(session, [sized(limit + 1)])
    assert (info.value.size, info.value.limit) == (limit + 1, limit)
    assert await history.session_info(session) is None
    at_limit = sized(limit)
    await history.add_messages(session, [at_limit])
    assert await history.list_messages(session) == [at_limit]
    await history.clear(session)


async def test_memory_holds_messages_up_to_64_mib() -> None:
    """The in-memory store's chosen limit is 64 MiB of stored JSON."""
    async with InMemoryChatHistoryProvider() as history:
        await check_limit(history, MEMORY_LIMIT, "s")


async def test_sqlite_limit_follows_the_connection_length_limit(tmp_path: Path) -> None:
    """On SQLite the limit is the connection's `SQLITE_LIMIT_LENGTH` less 8 KiB (here lowered
    to 200,000 bytes): the check precedes SQLite's own "string or blob too big"."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'limit.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def lower(dbapi_connection: Any, _record: Any) -> None:
        raw = dbapi_connection.driver_connection._conn  # aiosqlite's sqlite3 connection
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 200_000)

    history = SQLChatHistoryProvider(client=engine)
    try:
        await check_limit(history, 200_000 - 8 * 1024, "s")
    finally:
        await history.aclose()
        await engine.dispose()


async def test_sqlite_default_limit_is_sqlite_max_length(tmp_path: Path) -> None:
    """Unlowered, SQLite's limit is its default 10^9 bytes less 8 KiB."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'default.db'}")
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(check_server) == 1_000_000_000 - 8 * 1024
    finally:
        await engine.dispose()


async def test_postgres_limit_is_one_gib(postgres_url: str) -> None:
    """PostgreSQL's limit is 1 GiB (`bytea`, and the protocol message carrying it) less
    8 KiB; a message over it is refused before anything is sent."""
    history = SQLChatHistoryProvider(postgres_url)
    try:
        async with history.engine.connect() as conn:
            assert await conn.run_sync(check_server) == POSTGRES_LIMIT == (1 << 30) - 1 - 8192
    finally:
        await history.aclose()


@pytest.fixture
def small_redis() -> Iterator[str]:
    """A Redis server of this test with `proto-max-bulk-len` at its smallest, 1 MiB."""
    missing = redis_server_available()
    if missing is not None:
        service_unavailable("redis-server", missing)
    server = RedisProcesses(1, options=("--proto-max-bulk-len", "1mb"))
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


async def test_redis_limit_is_the_servers_proto_max_bulk_len(small_redis: str) -> None:
    """On Redis the limit is the server's `proto-max-bulk-len`, read once (here 1 MiB)."""
    from memweave.providers.redis import RedisChatHistoryProvider

    async with RedisChatHistoryProvider(small_redis) as history:
        await check_limit(history, MiB, "s")


async def test_redis_limit_defaults_when_config_is_refused(small_redis: str) -> None:
    """A user without the `CONFIG` command (as on managed services) gets Redis's default
    512 MiB; nothing fails for want of the setting."""
    from redis.asyncio import Redis

    admin = Redis.from_url(small_redis)
    try:
        await admin.acl_setuser(
            "limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"]
        )
        limited = Redis.from_url(small_redis.replace("redis://", "redis://limited:pw@"))
        try:
            assert await redis_limit(limited) == REDIS_DEFAULT_BULK_LEN
        finally:
            await limited.aclose()
    finally:
        await admin.aclose()


async def test_redis_cluster_limit_is_the_smallest_nodes() -> None:
    """In a Redis Cluster the limit is the smallest `proto-max-bulk-len` of its nodes."""
    from redis.asyncio import Redis, RedisCluster

    missing = redis_server_available()
    if missing is not None:
        service_unavailable("redis-server", missing)
    cluster = RedisProcesses(3, cluster=True, options=("--proto-max-bulk-len", "4mb"))
    try:
        cluster.start()
        node = Redis(port=cluster.ports[2])
        await node.config_set("proto-max-bulk-len", "2mb")
        await node.aclose()
        client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        try:
            assert await redis_limit(client) == 2 * MiB
        finally:
            await client.aclose()
    finally:
        cluster.stop()


def test_chroma_limit_depends_on_where_the_data_goes(tmp_path: Path) -> None:
    """Embedded Chroma takes messages up to half of 10^9 bytes less room; anything else (a
    server, an unknown client) half of a server's default 40 MiB request limit less room."""
    import chromadb

    assert chroma_limit(chromadb.PersistentClient(path=str(tmp_path))) == CHROMA_EMBEDDED_LIMIT
    assert chroma_limit(object()) == CHROMA_SERVER_LIMIT


async def test_chroma_server_refuses_a_message_over_its_limit(chroma_server_url: str) -> None:
    """A message over a Chroma server's limit is refused before it is embedded or sent."""
    from memweave.providers.chroma import ChromaChatHistoryProvider

    async with ChromaChatHistoryProvider(f"{chroma_server_url}?namespace=mwt-limits") as history:
        with pytest.raises(MessageTooLarge) as info:
            await history.add_messages("s", [sized(CHROMA_SERVER_LIMIT + 1)])
        assert info.value.limit == CHROMA_SERVER_LIMIT
        assert await history.count_messages("s") == 0
