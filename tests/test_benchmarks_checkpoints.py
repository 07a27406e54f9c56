"""The checkpointer benchmark emits the rows and fields its table and README quote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memweave.bench.checkpoints import MEMWEAVE, OFFICIAL, OPERATIONS, backend_name, main, run


async def test_run_times_memweave_beside_the_official_saver(tmp_path: Path) -> None:
    """Each saver gets a row per operation and size, memweave's with its ratios filled in."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    report = await run([url], [2, 4], quick=True, folder=tmp_path)
    rows = report["results"]
    savers = (MEMWEAVE, OFFICIAL["sqlite"])
    assert {(r["saver"], r["n"], r["operation"]) for r in rows} == {
        (saver, n, operation) for saver in savers for n in (2, 4) for operation in OPERATIONS
    }
    for row in rows:
        assert row["backend"] == "sqlite"
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["samples"] == report["repeat"]
        assert row["x_smallest_n"] is not None
        assert (row["x_official"] is not None) == (row["saver"] == MEMWEAVE)
    packages = report["environment"]["packages"]
    assert packages["langgraph-checkpoint"]
    assert packages["langgraph-checkpoint-sqlite"]


def test_main_prints_one_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints the report as one JSON document."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["--url", url, "--sizes", "2", "--quick", "--no-peers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["suite"] == "checkpoints"
    assert {row["saver"] for row in report["results"]} == {MEMWEAVE}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite+aiosqlite:///x.db", "sqlite"),
        ("postgresql+asyncpg://u@h/db", "postgres"),
        ("mysql+aiomysql://u@h/db", "mariadb"),
        ("redis+cluster://h:7000", "redis"),
    ],
)
def test_backend_name_names_the_database(url: str, name: str) -> None:
    """Each URL scheme is reported under its database's name."""
    assert backend_name(url) == name
