"""Fixtures for the `memweave` command's tests: running it in-process, and backend URLs.

The command calls `asyncio.run` itself, so these tests are plain functions and any async
setup goes through `asyncio.run` too. Every session id a test makes starts with its own
`prefix`; server backends are cleaned of exactly those sessions afterwards.
"""

from __future__ import annotations

import asyncio
import io
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memweave.cli import main
from tests.cli._helpers import POSTGRES_URL, REDIS_URL, Result, clean
from tests.conftest import service_unavailable


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run `memweave.cli.main` in this process: `cli("sessions", "list", url, stdin=b"")`."""

    def run(*args: str, stdin: bytes = b"") -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        code = main(list(args))
        sys.stdout.flush()
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def prefix() -> str:
    """A session-id prefix no other test, run or worker uses."""
    return f"mwcli-{uuid.uuid4().hex[:12]}-"


def _check_redis() -> None:
    try:
        import redis
    except ImportError as exc:
        service_unavailable("Redis", str(exc))
        return
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {REDIS_URL}", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def _check_postgres() -> None:
    try:
        import asyncpg
    except ImportError as exc:
        service_unavailable("PostgreSQL", str(exc))
        return

    async def ping() -> None:
        dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn, timeout=3)
        await connection.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_URL}", f"{type(exc).__name__}: {exc}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's temporary folder (the file does not exist yet)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def redis_url(prefix: str) -> Iterator[str]:
    """The shared Redis server; the test's sessions are deleted afterwards."""
    _check_redis()
    yield REDIS_URL
    clean(REDIS_URL, prefix)


@pytest.fixture
def postgres_url(prefix: str) -> Iterator[str]:
    """The shared PostgreSQL server; the test's sessions are deleted afterwards."""
    _check_postgres()
    yield POSTGRES_URL
    clean(POSTGRES_URL, prefix)


@pytest.fixture
def chroma_url(tmp_path: Path) -> str:
    """An embedded Chroma folder in the test's temporary folder."""
    folder = tmp_path / "chroma"
    folder.mkdir()
    return f"chroma://{folder}"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each durable backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
