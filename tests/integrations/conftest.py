"""Fixtures of the framework integration tests: memweave backends on SQLite and Redis.

Every test takes fresh session ids from `backend.new_session_id()` and, at teardown, clears
exactly those sessions: the Redis server is shared, so nothing else is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memweave.providers import ChatHistoryProvider, from_url
from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, the working directory of subprocesses the tests start."""

REDIS_URL = os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Backend:
    """A memweave history backend under test, with the URL another process can open it by."""

    name: str
    url: str
    history: ChatHistoryProvider
    session_ids: list[str] = field(default_factory=list)

    def new_session_id(self) -> str:
        """Return a session id no other test, run or worker uses; it is cleared at teardown."""
        session_id = f"mwt-int-{uuid.uuid4().hex}"
        self.session_ids.append(session_id)
        return session_id


def redis_reachable(url: str) -> None:
    """Skip (or fail under MEMWEAVE_REQUIRE_SERVICES=1) when Redis at `url` does not answer."""
    try:
        import redis
    except ImportError:
        service_unavailable(f"Redis at {url}", "the redis package is not installed")
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {url}", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A history backend: a SQLite file in the test's temporary folder, or the shared Redis."""
    if request.param == "redis":
        redis_reachable(REDIS_URL)
        url = REDIS_URL
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    history = from_url(url)
    backend = Backend(request.param, url, history)
    try:
        yield backend
    finally:
        for session_id in backend.session_ids:
            await history.clear(session_id)
        await history.aclose()
