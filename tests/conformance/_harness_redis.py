"""Conformance harness for `RedisChatHistoryProvider`, on one server and on a 3-node cluster."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from memweave.errors import MissingDependency
from memweave.providers import ChatHistoryProvider
from tests._redis_cluster import redis_cluster_url
from tests.conftest import service_unavailable

if TYPE_CHECKING:
    from memweave.providers.redis import RedisChatHistoryProvider

__all__ = ["redis_cluster_harness", "redis_cluster_url", "redis_harness", "redis_url"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisHarness:
    """Builds Redis providers on one URL; writes raw entries and expiries with their client."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def make(self, **options: Any) -> ChatHistoryProvider:
        from memweave.providers.redis import RedisChatHistoryProvider

        return RedisChatHistoryProvider(self.url, **options)

    def isolated_options(self) -> dict[str, Any]:
        return {"namespace": f"mwi-{uuid.uuid4().hex[:12]}"}

    async def drop_isolated(self, history: ChatHistoryProvider) -> None:
        provider = self._provider(history)
        client = provider._client
        # The namespace is hex made above, so it holds no glob characters; in a Cluster
        # scan_iter visits every master.
        keys = [key async for key in client.scan_iter(match=f"{provider.namespace}:*", count=1000)]
        for key in keys:
            await client.delete(key)

    @staticmethod
    def _provider(history: ChatHistoryProvider) -> RedisChatHistoryProvider:
        from memweave.providers.redis import RedisChatHistoryProvider

        assert isinstance(history, RedisChatHistoryProvider)
        return history

    async def write_raw(self, history: ChatHistoryProvider, session_id: str, data: bytes) -> None:
        provider = self._provider(history)
        client = provider._client
        keys = provider._session_keys(session_id)
        msgs, meta, ids = keys.session[:3]
        raw_id = f"raw-{uuid.uuid4().hex}"
        # Same slot, so one transaction keeps the entry, its role/id and the id set in step.
        pipe = client.pipeline(transaction=not provider._cluster)
        pipe.rpush(msgs, data)
        pipe.rpush(meta, "u" + raw_id)
        pipe.sadd(ids, raw_id)
        await pipe.execute()
        await client.zadd(keys.shard.sessions, {session_id: 0})

    async def expire_now(self, history: ChatHistoryProvider, session_id: str) -> None:
        provider = self._provider(history)
        client = provider._client
        keys = provider._session_keys(session_id)
        for key in keys.session:
            await client.pexpireat(key, 1)  # a time in the past deletes the key now
        if await client.zscore(keys.shard.sessions, session_id) is not None:
            await client.zadd(keys.shard.expiry, {session_id: 1})


def _check_reachable(url: str, what: str) -> None:
    try:
        import redis
    except ImportError:
        service_unavailable(what, str(MissingDependency("redis", "redis")))
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(what, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared Redis server (`MEMWEAVE_TEST_REDIS_URL`); skips when unreachable."""
    url = os.environ.get("MEMWEAVE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    _check_reachable(url, f"Redis at {url}")
    return url


@pytest.fixture(scope="session")
def redis_harness(redis_url: str) -> RedisHarness:
    """The Redis backend on one server."""
    return RedisHarness("redis", redis_url)


@pytest.fixture(scope="session")
def redis_cluster_harness(redis_cluster_url: str) -> RedisHarness:
    """The Redis backend on a 3-node Redis Cluster started by this test session."""
    port = redis_cluster_url.rsplit(":", 1)[1]
    _check_reachable(f"redis://127.0.0.1:{port}/0", "the local Redis Cluster")
    return RedisHarness("redis_cluster", redis_cluster_url)


HARNESSES: list[tuple[str, dict[str, str]]] = [
    ("redis_harness", {}),
    ("redis_cluster_harness", {}),
]
