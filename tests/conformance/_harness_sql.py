"""Conformance harness for `SQLChatHistoryProvider` on a SQLite file, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memweave._urls import mask_url
from memweave.providers import ChatHistoryProvider
from tests.conftest import service_unavailable

if TYPE_CHECKING:
    from memweave.providers.sql import SQLChatHistoryProvider

__all__ = [
    "mysql_harness",
    "mysql_url",
    "postgres_harness",
    "postgres_url",
    "sqlite_harness",
]

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"


class SQLHarness:
    """Builds SQL providers on one URL; writes raw rows and expiries with the provider's engine."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def make(self, **options: Any) -> ChatHistoryProvider:
        from memweave.providers.sql import SQLChatHistoryProvider

        return SQLChatHistoryProvider(self.url, **options)

    def isolated_options(self) -> dict[str, Any]:
        return {"namespace": f"mwi{uuid.uuid4().hex[:10]}"}

    async def drop_isolated(self, history: ChatHistoryProvider) -> None:
        provider = self._provider(history)
        async with provider.engine.begin() as conn:
            await conn.run_sync(provider.metadata.drop_all)

    @staticmethod
    def _provider(history: ChatHistoryProvider) -> SQLChatHistoryProvider:
        from memweave.providers.sql import SQLChatHistoryProvider

        assert isinstance(history, SQLChatHistoryProvider)
        return history

    async def write_raw(self, history: ChatHistoryProvider, session_id: str, data: bytes) -> None:
        from sqlalchemy import insert, update

        from memweave.providers._sql_schema import EpochNow, tables_for

        provider = self._provider(history)
        await provider.count_messages(session_id)  # creates the tables on first use
        tables = tables_for(provider.table_prefix)
        sessions = tables.sessions
        row = {"session_id": session_id, "message_id": f"raw-{uuid.uuid4().hex}", "role": "user"}
        async with provider.engine.begin() as conn:
            await conn.execute(insert(tables.messages).values(**row, data=data))
            # As an append would: the count and `updated_at`, or a new row with both times.
            bumped = await conn.execute(
                update(sessions)
                .where(sessions.c.session_id == session_id)
                .values(message_count=sessions.c.message_count + 1, updated_at=EpochNow())
            )
            if bumped.rowcount == 0:
                await conn.execute(
                    insert(sessions).values(
                        session_id=session_id,
                        message_count=1,
                        created_at=EpochNow(),
                        updated_at=EpochNow(),
                    )
                )

    async def expire_now(self, history: ChatHistoryProvider, session_id: str) -> None:
        from sqlalchemy import update

        from memweave.providers._sql_schema import tables_for

        provider = self._provider(history)
        sessions = tables_for(provider.table_prefix).sessions
        async with provider.engine.begin() as conn:
            await conn.execute(
                update(sessions).where(sessions.c.session_id == session_id).values(expires_at=0.0)
            )

    def delete_leftovers(self, prefix: str) -> None:
        """Delete every row of sessions whose id starts with `prefix`: the expired sessions
        this run made are not listed, so the per-test cleanup cannot see them."""
        asyncio.run(self._delete_leftovers(prefix))

    async def _delete_leftovers(self, prefix: str) -> None:
        from sqlalchemy import delete

        from memweave.providers._sql_schema import tables_for

        provider = self._provider(self.make())
        tables = tables_for(provider.table_prefix)
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        try:
            async with provider.engine.begin() as conn:
                for table in (tables.sessions, tables.messages):
                    column = table.c.session_id
                    await conn.execute(delete(table).where(column >= prefix, column < upper))
        finally:
            await provider.aclose()


def _run_prefix() -> str:
    from tests.conformance.conftest import RUN_ID

    return f"mwt-{RUN_ID}-"


async def _ping(url: str) -> None:
    from memweave.providers.sql import SQLChatHistoryProvider

    provider = SQLChatHistoryProvider(url)
    try:
        await asyncio.wait_for(provider.list_sessions(prefix="mwt-ping-"), timeout=10)
    finally:
        await provider.aclose()


def check_reachable(url: str, what: str) -> None:
    """Skip (or fail under MEMWEAVE_REQUIRE_SERVICES=1) when `url` cannot be used."""
    from memweave.errors import MemweaveError

    try:
        asyncio.run(_ping(url))
    except (MemweaveError, TimeoutError) as exc:
        service_unavailable(what, f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def sqlite_harness(tmp_path_factory: pytest.TempPathFactory) -> SQLHarness:
    """The SQL backend on a SQLite file that other processes open by its URL."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "history.db"
    return SQLHarness("sqlite", f"sqlite+aiosqlite:///{path}")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the shared PostgreSQL server (`MEMWEAVE_TEST_POSTGRES_URL`); skips when
    unreachable."""
    url = os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    check_reachable(url, f"PostgreSQL at {mask_url(url)}")
    return url


@pytest.fixture(scope="session")
def postgres_harness(postgres_url: str) -> Iterator[SQLHarness]:
    """The SQL backend on PostgreSQL (asyncpg)."""
    harness = SQLHarness("postgres", postgres_url)
    yield harness
    harness.delete_leftovers(_run_prefix())


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """URL of the shared MariaDB/MySQL server (`MEMWEAVE_TEST_MYSQL_URL`); skips when
    unreachable."""
    url = os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    check_reachable(url, f"MariaDB/MySQL at {mask_url(url)}")
    return url


@pytest.fixture(scope="session")
def mysql_harness(mysql_url: str) -> Iterator[SQLHarness]:
    """The SQL backend on MariaDB/MySQL (aiomysql)."""
    harness = SQLHarness("mysql", mysql_url)
    yield harness
    harness.delete_leftovers(_run_prefix())


HARNESSES: list[tuple[str, dict[str, str]]] = [
    ("sqlite_harness", {}),
    ("postgres_harness", {}),
    ("mysql_harness", {}),
]
