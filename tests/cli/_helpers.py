"""Helpers for the `memweave` command's tests: seeded data, reading it back, subprocess runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memweave import ChatMessage, ToolCall, from_url
from memweave.providers.base import PageRow
from memweave.providers.sql import SQLChatHistoryProvider

REDIS_URL = os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "MEMWEAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What one run of the command did."""

    code: int
    out: str
    err: str


def run_subprocess(
    *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m memweave.cli ARGS` in a child process, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "memweave.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def clean(url: str, prefix: str) -> None:
    """Delete every session at `url` whose id starts with `prefix`."""

    async def run() -> None:
        async with from_url(url) as history:
            for session in await history.list_sessions(prefix=prefix):
                await history.clear(session)

    asyncio.run(run())


def conversation(tag: str = "", *, start: datetime | None = None) -> list[ChatMessage]:
    """A conversation exercising every field: names, tool calls, content parts, unicode,
    metadata, a refusal, and timestamps with microseconds."""
    at = start or datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=UTC)
    tick = iter(range(100))

    def when() -> datetime:
        index = next(tick)
        return at + timedelta(seconds=7 * index, microseconds=index)

    call = f"call_{uuid.uuid4().hex[:8]}"
    return [
        ChatMessage.system("You are terse. [bold]not markup[/bold]", created_at=when()),
        ChatMessage.user(
            f"Weather in Zürich? {tag} ☂ \u00e9\u0301 日本語",
            name="ada",
            created_at=when(),
            metadata={"source": "web", "n": [1, 2.5, None, True], "nested": {"k": "v"}},
        ),
        ChatMessage.assistant(
            tool_calls=[ToolCall(id=call, name="get_weather", arguments='{"city": "Zürich"}')],
            created_at=when(),
        ),
        ChatMessage.tool(call, '{"temp_c": 12.5}', created_at=when()),
        ChatMessage.assistant("It is 12.5 °C.\nTake an umbrella.", name="bot", created_at=when()),
        ChatMessage.user(
            [
                {"type": "text", "text": "And this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
            created_at=when(),
        ),
        ChatMessage.assistant(refusal="I cannot look at images.", created_at=when()),
    ]


def seed(url: str, sessions: Mapping[str, Sequence[ChatMessage]]) -> None:
    """Store `sessions` (id -> messages) at `url` through the public API."""

    async def write() -> None:
        async with from_url(url) as history:
            for session, messages in sessions.items():
                for start in range(0, len(messages), 500):
                    await history.add_messages(session, messages[start : start + 500])

    asyncio.run(write())


def stored(url: str, prefix: str) -> dict[str, list[ChatMessage]]:
    """Every session at `url` whose id starts with `prefix`, with its messages."""

    async def read() -> dict[str, list[ChatMessage]]:
        async with from_url(url) as history:
            return {
                session: await history.list_messages(session)
                for session in await history.list_sessions(prefix=prefix)
            }

    return asyncio.run(read())


@dataclass
class Reads:
    """How the providers a command opened read their stores."""

    whole: list[str] = field(default_factory=list)
    """Sessions read whole (`list_messages` without `limit`)."""
    pages: list[tuple[int, int | None]] = field(default_factory=list)
    """Each `_read_page` call: the `limit` asked, and the rows returned (None: no cursor)."""
    listings: list[int | None] = field(default_factory=list)
    """The `limit` of each `_list_sessions` call (None: every session at once)."""


class RecordingSQLHistory(SQLChatHistoryProvider):
    """A SQL provider that records in `reads` how it reads (see `Reads`)."""

    def __init__(self, url: str, reads: Reads, **options: Any) -> None:
        super().__init__(url, **options)
        self.reads = reads

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        if limit is None:
            self.reads.whole.append(session_id)
        return await super()._read(session_id, limit)

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        rows = await super()._read_page(session_id, after=after, before=before, limit=limit)
        self.reads.pages.append((limit, None if rows is None else len(rows)))
        return rows

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        self.reads.listings.append(limit)
        return await super()._list_sessions(prefix, after=after, limit=limit)


def recording_open(reads: Reads) -> Callable[..., SQLChatHistoryProvider]:
    """An `open_history` for SQLite URLs whose providers record how they read into `reads`."""

    def open_history(
        url: str, *, must_exist: bool, options: Iterable[tuple[str, Any]] = ()
    ) -> SQLChatHistoryProvider:
        assert url.startswith("sqlite"), url
        return RecordingSQLHistory(url, reads, **dict(options))

    return open_history
