"""`memweave bench` report.md: every part of results.json has its section, and the header names
each server and engine the run used, with its version and address."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memweave.cli._report import SECTIONS, servers_used
from tests.cli._helpers import Result

Cli = Callable[..., Result]


def _run(cli: Cli, out: Path, *args: str) -> tuple[dict[str, Any], str]:
    result = cli("bench", *args, "--quick", "--no-peers", "--out", str(out))
    assert result.code == 0, result.err
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def _parts(results: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(parent path, key, value) of every part SECTIONS accounts for."""
    parts = [("", key, value) for key, value in results.items()]
    for path in SECTIONS:
        if not path:
            continue
        node: Any = results
        for step in path.split("."):
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, dict):
            parts += [(path, key, value) for key, value in node.items()]
    return parts


def test_report_shows_every_part_of_results_json(cli: Cli, tmp_path: Path) -> None:
    """Each part of results.json is in SECTIONS, and each measured part's heading is in
    report.md (the budgeted reads, the blocking face and the retry cost included)."""
    history, history_report = _run(
        cli, tmp_path / "h", "history", "--url", "memory://", "--sizes", "10", "20"
    )
    reducers, reducers_report = _run(
        cli, tmp_path / "r", "reducers", "--messages", "200", "--turns", "2"
    )
    checked = set()
    for results, report in ((history, history_report), (reducers, reducers_report)):
        for path, key, value in _parts(results):
            where = f"{path}.{key}" if path else key
            assert key in SECTIONS[path], f"results.json part {where!r} has no report section"
            heading = SECTIONS[path][key]
            if heading is not None and value not in (None, [], {}):
                assert f"\n{heading}\n" in f"\n{report}", f"{heading!r} ({where}) missing"
                checked.add(where)
    assert {
        "history.sync_face",
        "history.retry_overhead",
        "reducers.results.budgeted_read",
        "reducers.results.targets",
    } <= checked


def test_report_keeps_every_history_size_of_the_blocking_face(cli: Cli, tmp_path: Path) -> None:
    """With several sizes, the blocking face's rows of every size reach results.json and
    report.md, not only the first size's."""
    results, report = _run(
        cli, tmp_path / "h", "history", "--url", "memory://", "--sizes", "10", "20"
    )
    assert {row["n"] for row in results["history"]["sync_face"]} == {10, 20}
    assert "| memory | 20 | add_messages |" in report
    assert len(results["history"]["retry_overhead"]) == 1


def test_report_header_names_servers_with_versions(cli: Cli, tmp_path: Path) -> None:
    """The header says which engines a run used, with versions (SQLite for the budgeted
    reads here) and the suites that used them."""
    _, report = _run(cli, tmp_path / "r", "reducers", "--messages", "200", "--turns", "2")
    header = report.split("\n## ", 1)[0]
    assert "Servers and engines:" in header
    assert "- SQLite 3." in header
    assert ": reducers (budgeted reads)" in header


def test_servers_used_says_version_address_and_suites() -> None:
    """Each server is one line: name and version, address (local or remote), suites."""
    results = {
        "manifest": {
            "backends": [
                {"backend": "memory", "url": "memory://", "server": "in-process"},
                {
                    "backend": "redis",
                    "url": "redis://127.0.0.1:6379/0",
                    "server": "Redis 7.0.15",
                },
                {
                    "backend": "postgresql",
                    "url": "postgresql+asyncpg://root:***@db.example.com:5432/app",
                    "server": "postgresql 16.4",
                },
            ],
            "packages": {"chromadb": "1.5.9"},
        },
        "history": {},
        "reducers": {
            "results": {
                "budgeted_read": {
                    "backends": {
                        "sqlite": {
                            "status": "measured",
                            "url": "sqlite+aiosqlite:////tmp/x/reads.db",
                            "server": "SQLite 3.40.1",
                        },
                        "redis": {
                            "status": "measured",
                            "url": "redis://127.0.0.1:6379/0",
                            "server": "Redis 7.0.15",
                        },
                    }
                }
            }
        },
        "scale": {
            "backends": [
                {
                    "backend": "mariadb",
                    "url": "mysql+aiomysql://root@localhost:3306/test",
                    "server": "mysql 10.11.6",
                    "status": "measured",
                },
                {"backend": "redis", "status": "skipped", "reason": "no redis-server"},
            ]
        },
        "retrieval": {},
    }
    assert servers_used(results) == [
        "memory (in-process Python objects, no server): history",
        "Redis 7.0.15 at 127.0.0.1:6379 (local): history, reducers (budgeted reads)",
        "postgresql 16.4 at db.example.com:5432 (remote): history",
        "SQLite 3.40.1, embedded (file `reads.db`): reducers (budgeted reads)",
        "mysql 10.11.6 at localhost:3306 (local): scale",
        "Chroma 1.5.9, embedded in a temporary folder: retrieval",
    ]
