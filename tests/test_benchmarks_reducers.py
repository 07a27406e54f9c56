"""Smoke test of `python -m benchmarks.reducers`: it runs on a tiny history and emits its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import reducers
from benchmarks._workload import make_conversation


def test_reducers_benchmark_emits_its_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--json prints a report with parameters, versions, machine and every measurement."""
    output = tmp_path / "report.json"
    argv = ["--messages", "60", "--max-tokens", "800", "--turns", "3", "--baseline-turns", "1"]
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


def test_reducers_benchmark_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json it prints a table naming each measured operation."""
    argv = ["--messages", "40", "--turns", "2", "--baseline-turns", "1", "--no-peers"]
    assert reducers.main(argv) == 0
    table = capsys.readouterr().out
    for row in ("TokenBudgetReducer, per turn", "naive: re-encode", "LangChain trim_messages"):
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
