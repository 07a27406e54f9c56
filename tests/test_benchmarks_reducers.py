"""Smoke test of `python -m memweave.bench.reducers`: runs on a tiny history, emits its fields."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import redis

from memweave.bench import reducers
from memweave.bench._workload import make_conversation
from tests.conformance._harness_redis import redis_url

__all__ = ["redis_url"]

READ_FIELDS = {
    "status",
    "url",
    "fill_s",
    "first_read_ms",
    "read",
    "full_read_reduce",
    "speedup_vs_full_read",
    "window_messages",
    "window_tokens",
    "target_met",
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert reducers.main([*argv, "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_reducers_benchmark_emits_its_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--json prints a report with parameters, versions, machine and every measurement."""
    output = tmp_path / "report.json"
    argv = ["--messages", "60", "--max-tokens", "800", "--turns", "3", "--baseline-turns", "1"]
    argv += ["--read-messages", "150", "--read-repeats", "2", "--full-reads", "1", "--no-redis"]
    assert reducers.main([*argv, "--peer-turns", "1", "--json", "--output", str(output)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(output.read_text())
    assert report["suite"] == "reducers"
    assert {"memweave", "tiktoken", "langchain_core"} <= report["versions"].keys()
    assert {"python", "machine", "cpus"} <= report["machine"].keys()
    results = report["results"]
    for key in ("per_turn", "count_reducer_per_turn", "floor_slice", "naive_per_turn"):
        assert {"p50_ms", "p95_ms", "mean_ms", "samples"} <= results[key].keys()
    for key in ("first_call_ms", "window_messages", "window_tokens", "speedup_vs_naive"):
        assert key in results
    assert results["langchain"]["status"] in {"measured", "skipped"}
    if results["langchain"]["status"] == "measured":
        assert {"per_turn", "speedup", "windows_compared", "windows_identical"} <= results[
            "langchain"
        ].keys()
    assert {"per_turn_met", "speedup_vs_langchain_met"} <= results["targets"].keys()
    assert {"budgeted_read_p50_ms_below", "budgeted_read_met"} <= results["targets"].keys()
    params = report["parameters"]
    assert (params["read_messages"], params["read_repeats"], params["full_reads"]) == (150, 2, 1)
    assert params["redis_url"] is None
    reads = results["budgeted_read"]
    assert (reads["messages"], reads["max_tokens"]) == (150, 800)
    sqlite = reads["backends"]["sqlite"]
    assert sqlite.keys() >= READ_FIELDS
    assert sqlite["status"] == "measured"
    for key in ("read", "full_read_reduce"):
        assert {"p50_ms", "p95_ms", "mean_ms", "samples"} <= sqlite[key].keys()
    assert (sqlite["read"]["samples"], sqlite["full_read_reduce"]["samples"]) == (2, 1)
    assert reads["backends"]["redis"] == {"status": "skipped", "reason": "--no-redis"}


def test_reducers_benchmark_read_session_defaults_to_ten_histories() -> None:
    """Without --read-messages the read session is 10x the history (100,000 by default)."""
    assert reducers.Options().read_session_messages == 100_000
    assert reducers.Options(messages=300).read_session_messages == 3_000
    assert reducers.Options(messages=300, read_messages=0).read_session_messages == 0


def test_reducers_benchmark_times_budgeted_reads_on_redis(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    """With a reachable Redis the budgeted read runs there too, keeps the window SQLite keeps,
    and leaves no key under its own prefix."""
    report = _run(
        capsys,
        *("--messages", "40", "--max-tokens", "800", "--turns", "1", "--baseline-turns", "0"),
        *("--no-peers", "--read-messages", "300", "--read-repeats", "2", "--full-reads", "1"),
        *("--redis-url", redis_url),
    )
    backends = report["results"]["budgeted_read"]["backends"]
    assert backends["redis"]["status"] == "measured"
    assert backends["redis"].keys() >= READ_FIELDS | {"namespace"}
    assert backends["redis"]["window_messages"] == backends["sqlite"]["window_messages"] < 300
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{backends['redis']['namespace']}:*")) == []
    finally:
        client.close()


def test_reducers_benchmark_skips_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable Redis is reported as skipped with the reason; SQLite is still measured."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = _run(
        capsys,
        *("--messages", "40", "--turns", "1", "--baseline-turns", "0", "--no-peers"),
        *("--read-messages", "80", "--read-repeats", "1", "--full-reads", "0"),
        *("--redis-url", f"redis://127.0.0.1:{port}/0"),
    )
    backends = report["results"]["budgeted_read"]["backends"]
    assert backends["sqlite"]["status"] == "measured"
    assert backends["sqlite"]["full_read_reduce"] is None
    assert backends["redis"]["status"] == "skipped"
    assert "BackendUnavailable" in backends["redis"]["reason"]


def test_reducers_benchmark_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json it prints a table naming each measured operation."""
    argv = ["--messages", "40", "--turns", "2", "--baseline-turns", "1", "--no-peers"]
    argv += ["--read-messages", "100", "--read-repeats", "1", "--full-reads", "1", "--no-redis"]
    assert reducers.main(argv) == 0
    table = capsys.readouterr().out
    for row in ("TokenBudgetReducer, per turn", "naive: re-encode", "LangChain trim_messages"):
        assert row in table
    for row in ("budgeted read, sqlite", "full read + reduce, sqlite", "budgeted read, redis"):
        assert row in table


def test_workload_is_seeded_and_valid() -> None:
    """The shared workload is deterministic per seed, exactly n long, with answered calls."""
    history = make_conversation(300, seed=7)
    assert len(history) == 300
    assert history == make_conversation(300, seed=7)
    assert history != make_conversation(300, seed=8)
    calls = {call.id for m in history for call in m.tool_calls}
    results = {m.tool_call_id for m in history if m.role == "tool"}
    assert calls
    assert calls == results
    words = [len(m.text.split()) for m in history if m.role in ("user", "assistant") and m.text]
    assert min(words) >= 20
    assert max(words) <= 400
