"""Smoke test of `python -m memweave.bench.orchestration`: runs a few turns, emits its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memweave.bench import orchestration

STEP_FIELDS = {"step_total", "step_history", "step_model", "step_overhead"}
SUMMARY_FIELDS = {"p50_ms", "p95_ms", "mean_ms", "samples"}


def test_orchestration_benchmark_emits_its_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--json prints a report with parameters, versions, machine and, for run and run_stream,
    the per-step total, history, model and overhead summaries with the target verdict."""
    output = tmp_path / "report.json"
    argv = ["--turns", "3", "--warmup", "1", "--history", "12", "--window", "6"]
    assert orchestration.main([*argv, "--json", "--output", str(output)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(output.read_text())
    assert report["suite"] == "orchestration"
    assert report["parameters"]["turns"] == 3
    assert report["parameters"]["steps_per_turn"] == 2
    assert report["target_overhead_ms"] == orchestration.TARGET_OVERHEAD_MS
    assert {"memweave", "pydantic", "sqlalchemy", "aiosqlite"} <= report["versions"].keys()
    assert {"python", "machine", "cpus"} <= report["machine"].keys()
    assert set(report["results"]) == set(orchestration.MODES)
    for result in report["results"].values():
        assert result.keys() >= STEP_FIELDS
        for name in STEP_FIELDS:
            assert result[name].keys() == SUMMARY_FIELDS
            assert result[name]["samples"] == 3
        assert isinstance(result["target_met"], bool)
    assert report["results"]["run_stream"]["events_per_turn"] > 0


def test_orchestration_benchmark_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json it prints one row per mode."""
    assert orchestration.main(["--turns", "2", "--warmup", "0", "--history", "8"]) == 0
    table = capsys.readouterr().out
    assert "overhead p50" in table
    assert all(mode in table for mode in orchestration.MODES)
