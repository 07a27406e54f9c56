"""The scale benchmark emits every figure beside its floor, on tiny sizes (no timing checked)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from memweave.bench._scale_backends import SESSION_TEMPLATE, make_target, session_id
from memweave.bench._scale_redis import redis_server_available
from memweave.bench.scale import Options, build_parser, format_table, main, options_from, run
from memweave.errors import MemweaveError
from tests.conftest import service_unavailable

_TINY: dict[str, Any] = {
    "turn_sizes": (30, 60),
    "session_sizes": (20, 150),
    "export_messages": 300,
    "turns": 3,
    "lookups": 3,
    "budget_s": 0.5,
}
_SUMMARY = {"p50_ms", "p95_ms", "mean_ms", "samples"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One tiny run on memory and SQLite, shared by the checks below."""
    options = Options(backends=("memory", "sqlite"), parts=("turn", "sessions", "export"), **_TINY)
    return asyncio.run(run(options))


def test_run_records_versions_machine_and_backends(report: dict[str, Any]) -> None:
    """The report says what ran where: versions, machine, each backend and its server."""
    assert report["suite"] == "scale"
    assert report["versions"]["memweave"]
    assert report["machine"]["cpus"] >= 1
    assert [(b["backend"], b["status"]) for b in report["backends"]] == [
        ("memory", "measured"),
        ("sqlite", "measured"),
    ]
    assert report["backends"][1]["server"].startswith("sqlite ")
    assert "postgres_url" not in report["parameters"]


def test_turn_rows_hold_the_turn_the_windowed_read_and_the_floor(report: dict[str, Any]) -> None:
    """Each backend and history length has a turn, a windowed read and a floor, summarised."""
    rows = report["turn"]
    assert [(r["backend"], r["n"]) for r in rows] == [
        (b, n) for b in ("memory", "sqlite") for n in (30, 60)
    ]
    for row in rows:
        for key in ("turn", "windowed_read", "floor"):
            assert set(row[key]) == _SUMMARY
            assert row[key]["samples"] == 3
        assert 0 < row["window_messages"] <= row["n"]
        assert row["sent_messages"] > 0


def test_session_rows_hold_pages_lookups_and_their_floors(report: dict[str, Any]) -> None:
    """Each backend and session count has a page and a lookup, each beside its floor."""
    rows = report["sessions"]
    assert [(r["backend"], r["n"]) for r in rows] == [
        (b, n) for b in ("memory", "sqlite") for n in (20, 150)
    ]
    for row in rows:
        for key in ("list_page", "list_floor", "info", "info_floor"):
            assert set(row[key]) == _SUMMARY
        assert row["page_size"] == 100


def test_export_rows_hold_peak_growth_for_memweave_and_the_floor(report: dict[str, Any]) -> None:
    """The export read every message, in a subprocess, and says how it measured memory."""
    assert [row["backend"] for row in report["export"]] == ["memory", "sqlite"]
    for row in report["export"]:
        assert row["messages"] == 300
        for reader in ("memweave", "floor"):
            measured = row[reader]
            assert measured["messages"] == 300
            assert measured["peak_growth_mb"] >= 0
            assert measured["peak_method"]


def test_targets_name_each_check_with_its_verdict(report: dict[str, Any]) -> None:
    """Every part that ran has its issue-11 target check per backend."""
    by_backend = report["targets"]["by_backend"]
    assert set(by_backend) == {"memory", "sqlite"}
    for checks in by_backend.values():
        assert set(checks) == {"turn", "list_page", "info", "export"}
        assert checks["turn"]["n"] == 60
        assert checks["turn"]["smallest_n"] == 30
        assert isinstance(checks["export"]["met"], bool)
    assert report["targets"]["cluster"] is None


def test_format_table_prints_every_part(report: dict[str, Any]) -> None:
    """The text output has the three tables and a line per part."""
    text = format_table(report)
    for heading in ("agent turn", "list_sessions(limit=100", "streaming export"):
        assert heading in text
    assert "sqlite" in text


def test_json_report_round_trips(report: dict[str, Any]) -> None:
    """The report is plain JSON."""
    assert json.loads(json.dumps(report)) == report


def test_sizes_fill_both_size_lists_unless_one_is_given() -> None:
    """`--sizes` sets history lengths and session counts; a specific flag overrides it."""
    parser = build_parser()
    both = options_from(parser.parse_args(["--sizes", "5", "6"]))
    assert both.turn_sizes == both.session_sizes == (5, 6)
    one = options_from(parser.parse_args(["--sizes", "5", "--session-sizes", "9"]))
    assert one.turn_sizes == (5,)
    assert one.session_sizes == (9,)
    quick = options_from(parser.parse_args(["--quick"]))
    assert quick.backends == ("memory", "sqlite")
    assert quick.turn_sizes == (1_000, 10_000)
    assert "cluster" not in quick.parts


def test_main_prints_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`--json` prints the report and `--output` writes the same document."""
    out = tmp_path / "scale.json"
    argv = ["--quick", "--backends", "memory", "--parts", "sessions", "--sizes", "20"]
    assert main([*argv, "--json", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sessions"][0]["n"] == 20
    assert json.loads(out.read_text())["sessions"][0]["n"] == 20


_SQL_URLS = {
    "sqlite": None,
    "postgresql": os.environ.get(
        "MEMWEAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get(
        "MEMWEAVE_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test"
    ),
}


@pytest.mark.parametrize("name", list(_SQL_URLS))
def test_sql_sessions_copied_in_bulk_read_like_stored_ones(name: str) -> None:
    """Sessions seeded by `INSERT ... SELECT` list, count and read as memweave's own."""

    async def check(url: str) -> None:
        target = make_target(name, url)
        try:
            await target.check()
        except MemweaveError as exc:
            await target.cleanup()
            service_unavailable(name, f"{type(exc).__name__}: {exc}")
        history = target.provider()
        try:
            await target.seed_sessions(history, 0, 40)
            await target.seed_sessions(history, 40, 120)
            assert await history.list_sessions(limit=5, after=session_id(99)) == [
                session_id(i) for i in range(100, 105)
            ]
            info = await history.session_info(session_id(119))
            assert info is not None
            assert info.message_count == len(SESSION_TEMPLATE)
            assert await history.list_messages(session_id(77)) == list(SESSION_TEMPLATE)
            assert len(await history.list_sessions()) == 120
        finally:
            await history.aclose()
            await target.cleanup()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(check(_SQL_URLS[name] or f"sqlite+aiosqlite:///{folder}/seed.db"))


def test_redis_part_runs_on_a_throwaway_server() -> None:
    """On Redis the run starts its own server, reads its SLOWLOG and measures every part."""
    missing = redis_server_available()
    if missing is not None:
        service_unavailable("redis-server", missing)
    options = Options(backends=("redis",), parts=("turn", "sessions", "cluster"), **_TINY)
    options.cluster_sessions = 12
    options.cluster_appends = 2
    result = asyncio.run(run(options))
    assert result["backends"][0]["status"] == "measured", result["backends"]
    assert result["backends"][0]["server"].startswith("Redis ")
    assert {row["n"] for row in result["sessions"]} == {20, 150}
    assert set(result["slowlog"]) == {"measured", "setup", "floor"}
    assert result["slowlog"]["measured"]["owned_server"] is True
    assert result["slowlog"]["measured"]["logged_slower_than_us"] == 1000
    cluster = result["cluster"]
    assert cluster["status"] == "measured", cluster
    for writer in ("memweave", "floor"):
        assert len(cluster[writer]["shares"]) == 3
        assert sum(cluster[writer]["shares"]) == pytest.approx(1, abs=0.01)
    assert cluster["floor"]["append"]["samples"] == 24
