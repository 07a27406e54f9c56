"""`memweave sessions migrate`: lossless between backends, resumable, verified."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memweave import ChatMessage, from_url
from memweave.bench._workload import make_conversation
from memweave.cli._common import open_history as real_open
from memweave.errors import BackendUnavailable
from memweave.providers import ChatHistoryProvider
from tests.cli._helpers import ROOT, Reads, Result, conversation, recording_open, seed, stored

Cli = Callable[..., Result]


def _sessions(prefix: str) -> dict[str, list[ChatMessage]]:
    return {
        f"{prefix}a:{{x}}*%_'\"é": conversation("a"),
        f"{prefix}b": make_conversation(600, seed=3),
        f"{prefix}c": conversation("c"),
    }


def test_migrate_sqlite_redis_postgres_and_back_is_lossless(
    cli: Cli, redis_url: str, postgres_url: str, prefix: str, tmp_path: Path
) -> None:
    """SQLite -> Redis -> PostgreSQL -> SQLite keeps every id, byte and position."""
    first = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    last = f"sqlite+aiosqlite:///{tmp_path / 'last.db'}"
    sessions = _sessions(prefix)
    seed(first, sessions)
    for source, target in ((first, redis_url), (redis_url, postgres_url), (postgres_url, last)):
        result = cli(
            "sessions", "migrate", source, target, "--prefix", prefix, "--batch-size", "64"
        )
        assert result.code == 0, result.err
        assert "migrated 3 sessions, 614 messages" in result.err
        assert "verified: counts and SHA-256 checksums match" in result.err
        assert stored(target, prefix) == sessions
    exports = [
        cli("sessions", "export", url, "--prefix", prefix).out
        for url in (first, postgres_url, last)
    ]
    assert exports[0] == exports[1] == exports[2]


@pytest.mark.parametrize("target", ["sqlite", "redis"])
def test_migrate_resumes_after_a_failure_without_duplicates(
    cli: Cli,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    target: str,
) -> None:
    """A run that fails half way is finished by running it again, in order, nothing twice."""
    target_url: str = (
        f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
        if target == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    sessions = _sessions(prefix)
    seed(source, sessions)
    batches = 0

    def failing_open(url: str, **kwargs: Any) -> ChatHistoryProvider:
        history = real_open(url, **kwargs)
        if url != target_url:
            return history
        add = history.add_messages

        async def add_then_fail(session_id: str, messages: Any) -> None:
            nonlocal batches
            batches += 1
            if batches == 6:
                raise BackendUnavailable("connection reset by peer (injected)", url=url)
            await add(session_id, messages)

        history.add_messages = add_then_fail  # type: ignore[method-assign]
        return history

    monkeypatch.setattr("memweave.cli._migrate.open_history", failing_open)
    failed = cli("sessions", "migrate", source, target_url, "--prefix", prefix, "--batch-size=50")
    assert failed.code == 1
    assert failed.err.splitlines() == [
        f"memweave: error: backend unavailable at {target_url}: connection reset by peer (injected)"
    ]
    partial = stored(target_url, prefix)
    # Batch 1 copied session a (7 messages); batches 2-5 copied 200 messages of session b.
    assert {s: len(m) for s, m in partial.items()} == {
        f"{prefix}a:{{x}}*%_'\"é": 7,
        f"{prefix}b": 200,
    }
    monkeypatch.setattr("memweave.cli._migrate.open_history", real_open)
    resumed = cli(
        "sessions", "migrate", source, target_url, "--prefix", prefix, "--batch-size", "50"
    )
    assert resumed.code == 0, resumed.err
    assert "(207 were already there)" in resumed.err
    assert stored(target_url, prefix) == sessions


def test_migrate_reads_and_writes_one_page_at_a_time(
    cli: Cli, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither side is ever read whole: sessions are listed, read, checked and verified in
    pages of --batch-size, also when resuming a half-copied session."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    target = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
    sessions = _sessions(prefix)
    seed(source, sessions)
    seed(target, {f"{prefix}b": sessions[f"{prefix}b"][:130]})
    reads = Reads()
    monkeypatch.setattr("memweave.cli._migrate.open_history", recording_open(reads))
    monkeypatch.setattr("memweave.cli._common.SESSION_PAGE", 2)
    result = cli("sessions", "migrate", source, target, "--prefix", prefix, "--batch-size", "64")
    assert result.code == 0, result.err
    assert "migrated 3 sessions, 614 messages" in result.err
    assert "(130 were already there)" in result.err
    assert reads.whole == []
    assert reads.listings == [2, 2]
    assert {limit for limit, _ in reads.pages} == {64}
    assert max(rows or 0 for _, rows in reads.pages) == 64
    assert stored(target, prefix) == sessions


def test_migrate_rerun_after_success_copies_nothing(
    cli: Cli, sqlite_url: str, prefix: str, tmp_path: Path
) -> None:
    """Migrating again finds every message already there and stores no duplicate."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    sessions = _sessions(prefix)
    seed(source, sessions)
    assert cli("sessions", "migrate", source, sqlite_url, "--prefix", prefix).code == 0
    again = cli("sessions", "migrate", source, sqlite_url, "--prefix", prefix)
    assert again.code == 0, again.err
    assert "migrated 3 sessions, 614 messages" in again.err
    assert "(614 were already there)" in again.err
    assert stored(sqlite_url, prefix) == sessions


def test_migrate_conflict_found_on_a_later_page_leaves_the_target_untouched(
    cli: Cli, sqlite_url: str, prefix: str, tmp_path: Path
) -> None:
    """A target session that matches the source for a page, then differs, is not written."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    messages = make_conversation(300, seed=4)
    seed(source, {f"{prefix}s": messages})
    foreign = [*messages[:100], ChatMessage.user("written to the target by someone else")]
    seed(sqlite_url, {f"{prefix}s": foreign})
    result = cli(
        "sessions", "migrate", source, sqlite_url, "--prefix", prefix, "--batch-size", "64"
    )
    assert result.code == 1
    assert f"session '{prefix}s': the target already holds 101 messages that are not" in result.err
    assert [m.id for m in stored(sqlite_url, prefix)[f"{prefix}s"]] == [m.id for m in foreign]


def test_migrate_checksum_is_the_export_checksum() -> None:
    """The checksum migrate computes page by page equals `_records.checksum` of the session."""
    from memweave.cli._migrate import _Checksum
    from memweave.cli._records import checksum

    messages = [*conversation(), *make_conversation(40, seed=2)]
    digest = _Checksum()
    for message in messages:
        digest.add(message)
    assert digest.hexdigest() == checksum(messages)


def _count(url: str, session: str) -> int:
    async def count() -> int:
        async with from_url(url) as history:
            return await history.count_messages(session)

    return asyncio.run(count())


@pytest.mark.slow
def test_migrate_killed_half_way_resumes_without_duplicates(
    cli: Cli, postgres_url: str, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a migrate loses nothing; running it again completes it."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    session = f"{prefix}long"
    messages = make_conversation(3000, seed=11)
    seed(source, {session: messages})
    command = [sys.executable, "-m", "memweave.cli", "sessions", "migrate", source, postgres_url]
    process = subprocess.Popen(
        [*command, "--prefix", prefix, "--batch-size", "5"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def wait_for_some() -> int:
        async with from_url(postgres_url) as history:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                copied = await history.count_messages(session)
                if copied >= 100:
                    return copied
                await asyncio.sleep(0.005)
        return -1

    try:
        assert asyncio.run(wait_for_some()) >= 100, process.stderr
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    partial = stored(postgres_url, prefix).get(session, [])
    assert 0 < len(partial) < len(messages), "the migrate finished before it could be killed"
    assert [m.id for m in partial] == [m.id for m in messages[: len(partial)]]
    resumed = cli("sessions", "migrate", source, postgres_url, "--prefix", prefix)
    assert resumed.code == 0, resumed.err
    assert f"({len(partial):,} were already there)" in resumed.err
    assert stored(postgres_url, prefix) == {session: messages}
    assert _count(postgres_url, session) == len(messages)


def test_migrate_leaves_a_conflicting_target_session_untouched(
    cli: Cli, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A target session holding other messages is reported and not written; the rest is copied."""
    source = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    sessions = {f"{prefix}a": conversation("a"), f"{prefix}b": conversation("b")}
    seed(source, sessions)
    stranger = [ChatMessage.user("written to the target by someone else")]
    seed(redis_url, {f"{prefix}a": stranger})
    result = cli("sessions", "migrate", source, redis_url, "--prefix", prefix)
    assert result.code == 1
    assert f"session '{prefix}a': the target already holds 1 messages" in result.err
    assert result.err.splitlines()[-1].startswith("memweave: error: migration from")
    assert stored(redis_url, prefix) == {
        f"{prefix}a": stranger,
        f"{prefix}b": sessions[f"{prefix}b"],
    }


def test_migrate_through_embedded_chroma_is_lossless(
    cli: Cli, chroma_url: str, prefix: str, tmp_path: Path
) -> None:
    """SQLite -> embedded Chroma -> SQLite keeps every id, byte and position."""
    first = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    last = f"sqlite+aiosqlite:///{tmp_path / 'last.db'}"
    sessions = {f"{prefix}a:{{x}}*%_'\"é": conversation("a"), f"{prefix}b": conversation("b")}
    seed(first, sessions)
    for source, target in ((first, chroma_url), (chroma_url, last)):
        result = cli("sessions", "migrate", source, target, "--prefix", prefix)
        assert result.code == 0, result.err
        assert stored(target, prefix) == sessions
    exports = [cli("sessions", "export", url, "--prefix", prefix).out for url in (first, last)]
    assert exports[0] == exports[1]


def test_migrate_to_the_same_url_is_refused(cli: Cli, sqlite_url: str) -> None:
    """Migrating a store onto itself is refused before anything is read."""
    result = cli("sessions", "migrate", sqlite_url, sqlite_url)
    assert result.code == 1
    assert "FROM_URL and TO_URL are the same" in result.err


def test_migrate_help_states_its_memory_bound(cli: Cli) -> None:
    """The help says a session is streamed a page at a time, so memory is one page per side."""
    result = cli("sessions", "migrate", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "Memory: one page of the source and one of the target at a time" in text
    assert "whatever the length of a session or the number of sessions" in text
    assert "messages per page read and per append" in text
