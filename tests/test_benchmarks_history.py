"""The history benchmark measures what its table says it measures, beside its peers."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from memweave import ChatMessage, InMemoryChatHistoryProvider, from_url
from memweave.bench.history import (
    OPERATIONS,
    Measurement,
    PeerMeasurement,
    _bench_size,
    _peers_for,
    _print_table,
    run,
)
from tests.conftest import service_unavailable


class _CountingReads(InMemoryChatHistoryProvider):
    """Records how many messages each whole-session read returned."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads: list[int] = []

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[ChatMessage]:
        messages = await super().list_messages(session_id, limit=limit)
        if limit is None:
            self.full_reads.append(len(messages))
        return messages


async def test_read_all_reads_exactly_n_messages() -> None:
    """`read_all` at N reads N messages, not N plus the messages the timed appends added."""
    history = _CountingReads()
    results = await _bench_size("memory", "memory://", history, 50, quick=True)
    assert history.full_reads == [50, 50, 50]  # quick mode: three timed reads
    assert [m.operation for m in results] == list(OPERATIONS)
    assert all(m.n == 50 and m.p50_ms >= 0 for m in results)


# -- peers --------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_or_skip() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {REDIS_URL}", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def _check_peer_rows(results: list[Measurement], names: list[str]) -> None:
    assert [m.operation for m in results] == list(OPERATIONS)
    for row in results:
        assert [peer.peer for peer in row.peers] == names
        for peer in row.peers:
            assert 0 < peer.p50_ms <= peer.p95_ms
            assert 3 <= peer.samples <= row.samples
            # Both sides are rounded (ratios to 2 decimals), hence the tolerance.
            ratio = pytest.approx(peer.p50_ms / row.p50_ms, rel=0.01, abs=0.006)
            assert peer.ratio_to_memweave == ratio
            if row.operation in ("append_1", "read_all"):
                assert peer.note is None
    # None of the peers has a limit: their "last 20" reads everything, and the row says so.
    assert all(peer.note for peer in results[OPERATIONS.index("read_last_20")].peers)


@pytest.mark.xdist_group("redis")
async def test_redis_peers_are_timed_beside_memweave_and_cleaned_up() -> None:
    """On Redis, Agent Framework and LangChain are timed on each operation, then their keys go."""
    _redis_or_skip()
    import redis.asyncio as redis

    # agent-framework-redis is outside the `peers` extra (it pins redis<7.2.1): timed when
    # installed by hand, and otherwise reported as skipped, with how to install it.
    with_agent_framework = importlib.util.find_spec("agent_framework_redis") is not None
    peers, statuses = _peers_for(REDIS_URL)
    assert [s["status"] for s in statuses] == [
        "measured" if with_agent_framework else "skipped",
        "measured",
    ]
    if not with_agent_framework:
        assert "pip install agent-framework-redis" in statuses[0]["reason"]
    history = from_url(REDIS_URL)
    try:
        results = await _bench_size("redis", REDIS_URL, history, 30, quick=True, peers=peers)
    finally:
        await history.aclose()
    expected = ["LangChain RedisChatMessageHistory"]
    if with_agent_framework:
        expected.insert(0, "Agent Framework RedisHistoryProvider")
    _check_peer_rows(results, expected)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for peer in peers:
            # Every key a peer writes contains its session id, a fresh uuid.
            assert [key async for key in client.scan_iter(match=f"*{peer.session}*")] == []
    finally:
        await client.aclose()


async def test_sql_peer_is_reported_and_drops_its_table(tmp_path: Path) -> None:
    """On SQL, LangChain's history is timed on the same file and its table is dropped after."""
    path = tmp_path / "bench.db"
    report = await run([f"sqlite+aiosqlite:///{path}"], [30], quick=True)
    assert [(s["peer"], s["status"]) for s in report["peers"]] == [
        ("LangChain SQLChatMessageHistory", "measured")
    ]
    rows = [
        Measurement(**{**row, "peers": [PeerMeasurement(**peer) for peer in row["peers"]]})
        for row in report["results"]
    ]
    _check_peer_rows(rows, ["LangChain SQLChatMessageHistory"])
    json.dumps(report)
    with closing(sqlite3.connect(path)) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
    assert not [name for name in tables if name.startswith("memweave_bench_peer_")]


def test_missing_peer_is_skipped_with_a_one_line_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A peer whose package is missing is skipped, and the output says so in one line each."""
    monkeypatch.setitem(sys.modules, "agent_framework_redis", None)
    monkeypatch.setitem(sys.modules, "langchain_community", None)
    peers, statuses = _peers_for(REDIS_URL)
    assert peers == []
    assert [s["status"] for s in statuses] == ["skipped", "skipped"]
    assert "pip install agent-framework-redis" in statuses[0]["reason"]
    assert "pip install 'memweave[peers]'" in statuses[1]["reason"]
    _print_table({"results": [], "peers": statuses})
    lines = [line for line in capsys.readouterr().out.splitlines() if "peer skipped" in line]
    assert len(lines) == 2
    assert "agent_framework_redis is not installed" in lines[0]
