"""Fixtures for the orchestration tests: histories and the shared Redis and PostgreSQL
servers."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from memweave.errors import MissingDependency
from tests.conftest import service_unavailable
from tests.orchestration._builders import BatchRecordingHistory

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


@pytest.fixture
def history() -> BatchRecordingHistory:
    """An in-memory history provider that records its batches."""
    return BatchRecordingHistory()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared Redis server (`MEMWEAVE_TEST_REDIS_URL`); skips when unreachable."""
    url = os.environ.get("MEMWEAVE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        import redis
    except ImportError:
        service_unavailable(f"Redis at {url}", str(MissingDependency("redis", "redis")))
        return url
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {url}", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the shared PostgreSQL server (`MEMWEAVE_TEST_POSTGRES_URL`); skips when
    unreachable."""
    url = os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        import asyncpg
    except ImportError:
        service_unavailable(f"PostgreSQL at {url}", str(MissingDependency("asyncpg", "postgres")))
        return url

    async def ping() -> None:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(dsn, timeout=3)
        await connection.close()

    try:
        # In a thread of its own: async fixtures ask for this one inside a running loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(ping())).result()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_unavailable(f"PostgreSQL at {url}", f"{type(exc).__name__}: {exc}")
    return url
