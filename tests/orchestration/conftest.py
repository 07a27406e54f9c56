"""Fixtures for the orchestration tests: histories and the shared Redis server."""

from __future__ import annotations

import os

import pytest

from memweave.errors import MissingDependency
from tests.conftest import service_unavailable
from tests.orchestration._builders import BatchRecordingHistory

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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
