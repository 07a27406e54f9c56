"""Service-scale benchmark: turns at window cost, session pages by the million, streaming export.

Run as `python -m memweave.bench.scale` (`--help` for the options). Each figure sits beside a
floor measured in the same run, in the same loop (one call of each per round):

- **turn**: an `Agent` turn with `TokenBudgetReducer(8000)` and a scripted model
  (`memweave.testing.ScriptedChatClient`, no network) on a session of N realistic messages
  (1k / 10k / 100k): the windowed read alone (`list_messages(reducer=...)`), and the raw
  client reading the window's number of newest rows and `json.loads`-ing them (SQL: memweave's
  own table; Redis: a list of the same rows; memory: a Python list).
- **sessions**: with N sessions stored (10k / 100k / 1M), `list_sessions(limit=100,
  after=<random id>)` and `session_info(<random id>)`, beside the raw client's page and point
  lookup on an index of the same ids (SQL: a table with a primary key on the id; Redis: a
  sorted set read with ZRANGEBYLEX and ZSCORE; memory: `bisect`). SQL sessions are copied from
  one stored through memweave (see `memweave.bench._scale_backends`); Redis and memory sessions
  are stored through `add_messages`. On Redis, SLOWLOG is read for every command memweave sent.
- **export**: one session of 1,000,000 messages read with `iter_messages` in a subprocess of
  its own, reporting the peak memory growth while reading, beside the raw client's keyset
  pages of the same rows (`memweave.bench._scale_export`).
- **cluster**: appends to 1,000 sessions on a 3-master Redis Cluster the benchmark starts;
  each master's share of the commands it served (`INFO commandstats`), beside raw RPUSHes to
  one hash-tagged key per session.

Redis runs on a throwaway `redis-server` the benchmark starts on a free port (or on
`--redis-url`, whose SLOWLOG is then only read, never reset). Everything runs under fresh
table and key prefixes that are removed afterwards. It prints a table, or with `--json` a JSON
report holding the versions and the machine; `--output PATH` also writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memweave.bench._cli import positive_int
from memweave.bench._env import machine, package_version
from memweave.bench._scale_backends import Target, make_target
from memweave.bench._scale_parts import bench_cluster, bench_export, bench_sessions, bench_turns
from memweave.bench._scale_redis import (
    SLOWLOG_LIMIT_MS,
    RedisProcesses,
    RedisTarget,
    Slowlog,
    redis_server_available,
)
from memweave.errors import MemweaveError

__all__ = ["BACKENDS", "PARTS", "Options", "main", "run"]

BACKENDS = ("memory", "sqlite", "postgresql", "mariadb", "redis")
PARTS = ("turn", "sessions", "export", "cluster")

TARGET_TURN_P50_MS = 8.0
TARGET_PAGE_P50_MS = 20.0
TARGET_GROWTH = 2.0
"""The largest size's p50 may be at most this many times the smallest size's."""
TARGET_EXPORT_GROWTH_MB = 200.0
TARGET_MAX_SHARE = 0.5
TARGET_SLOWLOG_MS = SLOWLOG_LIMIT_MS

_PHASES = {
    "measured": "memweave's commands during the timed calls",
    "setup": "memweave's commands during seeding and clean-up",
    "floor": "the raw client's commands during the timed calls (the floors)",
}

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"


@dataclass
class Options:
    """What to measure; see `--help`."""

    backends: tuple[str, ...] = ("sqlite", "postgresql", "mariadb", "redis")
    parts: tuple[str, ...] = PARTS
    turn_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    session_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    export_messages: int = 1_000_000
    turns: int = 50
    """Rounds timed per size (one turn, one windowed read, one floor read each)."""
    lookups: int = 200
    """Rounds timed per size (one page and one session_info each, with their floors)."""
    budget_s: float = 10.0
    """A size stops after this many seconds of rounds (at least 3 rounds)."""
    max_tokens: int = 8_000
    page_size: int = 100
    cluster_sessions: int = 1_000
    cluster_appends: int = 3
    postgres_url: str = field(
        default_factory=lambda: os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    mysql_url: str = field(
        default_factory=lambda: os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    )
    redis_url: str | None = None
    """A Redis server to use; None starts a throwaway `redis-server`."""

    @classmethod
    def quick(cls, **overrides: Any) -> Options:
        """The few-seconds run of `memweave bench all`: 1k / 10k, memory and SQLite."""
        fields: dict[str, Any] = {
            "backends": ("memory", "sqlite"),
            "parts": ("turn", "sessions", "export"),
            "turn_sizes": (1_000, 10_000),
            "session_sizes": (1_000, 10_000),
            "export_messages": 20_000,
            "turns": 10,
            "lookups": 30,
            "budget_s": 2.0,
        }
        return cls(**{**fields, **overrides})


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: on a shared machine, other work skews timings."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


async def _server(target: Target) -> str | None:
    """The server's name and version, best effort."""
    if target.name == "memory":
        return "in-process"
    if isinstance(target, RedisTarget):
        info = await target.client.info("server")
        return f"Redis {info.get('redis_version')}"
    async with target.engine.connect() as conn:  # type: ignore[attr-defined]
        version = ".".join(str(part) for part in conn.dialect.server_version_info or ())
        return f"{conn.dialect.name} {version}".strip()


async def run(
    options: Options,
    progress: Callable[[str], object] | None = None,
    partial: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready report.

    `progress`, when given, is called with a short text before each step; `partial` with
    the report so far after each backend, so a long run that fails late keeps its figures.
    """
    say = progress or (lambda text: None)
    report: dict[str, Any] = {
        "suite": "scale",
        "parameters": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(options).items()
            if not key.endswith("_url")
        },
        "versions": {
            name: package_version(name)
            for name in ("memweave", "sqlalchemy", "aiosqlite", "asyncpg", "aiomysql", "redis")
        },
        "machine": {**machine(), "load_start": _load()},
        "backends": [],
        "turn": [],
        "sessions": [],
        "export": [],
        "cluster": None,
        "slowlog": None,
    }
    redis_server: RedisProcesses | None = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memweave-bench-scale-") as folder:
        try:
            for name in options.backends:
                target: Target | None = None
                entry: dict[str, Any] = {"backend": name}
                try:
                    if name == "redis" and options.redis_url is None:
                        missing = redis_server_available()
                        if missing is not None:
                            raise RuntimeError(missing)
                        redis_server = RedisProcesses().start()
                        target = make_target(name, redis_server.url, owned_server=True)
                    else:
                        target = make_target(name, _url(name, options, Path(folder)))
                    entry["url"] = target.masked_url
                    await target.check()
                    entry["server"] = await _server(target)
                # ImportError: a driver or backend module that cannot load skips its backend
                # with the reason, rather than losing the backends already measured.
                except (MemweaveError, RuntimeError, OSError, ImportError) as exc:
                    entry.update(status="skipped", reason=f"{type(exc).__name__}: {exc}")
                    report["backends"].append(entry)
                    say(f"scale: {name} skipped: {entry['reason']}")
                    if target is not None:
                        await target.cleanup()
                    continue
                entry["status"] = "measured"
                report["backends"].append(entry)
                try:
                    await _bench_target(target, options, report, say)
                finally:
                    await target.cleanup()
                if partial is not None:
                    partial(report)
            if "cluster" in options.parts:
                report["cluster"] = await _cluster(options, say)
        finally:
            if redis_server is not None:
                redis_server.stop()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_end"] = _load()
    report["targets"] = targets(report)
    return report


async def _bench_target(
    target: Target, options: Options, report: dict[str, Any], say: Callable[[str], object]
) -> None:
    slowlog = (
        Slowlog(target.client, owned=target.owned_server)
        if isinstance(target, RedisTarget)
        else None
    )
    mark = _no_mark if slowlog is None else slowlog.mark
    if slowlog is not None:
        await slowlog.start()
    if "turn" in options.parts:
        say(f"scale: {target.name}, agent turns at {_sizes(options.turn_sizes)} messages")
        report["turn"] += await bench_turns(target, options, mark)
    if "sessions" in options.parts:
        say(f"scale: {target.name}, session pages at {_sizes(options.session_sizes)} sessions")
        report["sessions"] += await bench_sessions(target, options, mark)
    if "export" in options.parts:
        say(f"scale: {target.name}, streaming export of {options.export_messages:,} messages")
        report["export"].append(await bench_export(target, options, mark))
    if slowlog is not None:
        report["slowlog"] = slowlog.summary()


async def _no_mark(phase: str, part: str) -> None:
    """Where no SLOWLOG is read, phases need no marking."""


async def _cluster(options: Options, say: Callable[[str], object]) -> dict[str, Any]:
    missing = redis_server_available()
    if missing is not None:
        return {"status": "skipped", "reason": missing}
    say(f"scale: Redis Cluster, appends to {options.cluster_sessions:,} sessions")
    try:
        return {"status": "measured", **await bench_cluster(options)}
    except (MemweaveError, RuntimeError, OSError, ImportError) as exc:
        return {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"}


def _url(name: str, options: Options, folder: Path) -> str:
    return {
        "memory": "memory://",
        "sqlite": f"sqlite+aiosqlite:///{folder / 'scale.db'}",
        "postgresql": options.postgres_url,
        "mariadb": options.mysql_url,
        "redis": options.redis_url or "",
    }[name]


def _sizes(sizes: Sequence[int]) -> str:
    return " / ".join(f"{n:,}" for n in sizes)


# -- targets ------------------------------------------------------------------------------------


def _growth(
    rows: list[dict[str, Any]], key: str, limit_ms: float, *, strict: bool
) -> dict[str, Any]:
    """The target check of one measured operation on one backend: the largest size's p50
    against `limit_ms` (below it when `strict`, else at most) and against the smallest size's
    p50."""
    rows = sorted(rows, key=lambda row: row["n"])
    small, large = rows[0], rows[-1]
    p50, base = large[key]["p50_ms"], small[key]["p50_ms"]
    growth = p50 / base if base > 0 else None
    return {
        "n": large["n"],
        "p50_ms": round(p50, 4),
        "smallest_n": small["n"],
        "smallest_p50_ms": round(base, 4),
        "growth": None if growth is None else round(growth, 2),
        "met": (p50 < limit_ms if strict else p50 <= limit_ms)
        and (growth is None or growth <= TARGET_GROWTH),
    }


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each issue-11 target beside what was measured, per backend."""
    by_backend: dict[str, dict[str, Any]] = {}
    for part, keys, limit, strict in (
        ("turn", ("turn",), TARGET_TURN_P50_MS, False),
        ("sessions", ("list_page", "info"), TARGET_PAGE_P50_MS, True),
    ):
        for backend in dict.fromkeys(row["backend"] for row in report[part]):
            rows = [row for row in report[part] if row["backend"] == backend]
            for key in keys:
                by_backend.setdefault(backend, {})[key] = _growth(rows, key, limit, strict=strict)
    for row in report["export"]:
        growth = row["memweave"]["peak_growth_mb"]
        by_backend.setdefault(row["backend"], {})["export"] = {
            "messages": row["messages"],
            "peak_growth_mb": round(growth, 1),
            "met": growth < TARGET_EXPORT_GROWTH_MB,
        }
    cluster = report.get("cluster") or {}
    slowlog = report.get("slowlog")
    return {
        "turn_p50_ms_at_most": TARGET_TURN_P50_MS,
        "page_p50_ms_below": TARGET_PAGE_P50_MS,
        "growth_at_most": TARGET_GROWTH,
        "export_peak_growth_mb_below": TARGET_EXPORT_GROWTH_MB,
        "cluster_max_share_at_most": TARGET_MAX_SHARE,
        "slowlog_max_ms_at_most": TARGET_SLOWLOG_MS,
        "by_backend": by_backend,
        "cluster": None
        if cluster.get("status") != "measured"
        else {
            "max_share": cluster["memweave"]["max_share"],
            "met": cluster["memweave"]["max_share"] <= TARGET_MAX_SHARE,
        },
        "slowlog": None
        if slowlog is None
        else {
            "max_ms": slowlog["measured"]["max_ms"],
            "met": slowlog["measured"]["max_ms"] <= TARGET_SLOWLOG_MS,
        },
    }


# -- text output --------------------------------------------------------------------------------


def _cells(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _p50(summary: dict[str, Any] | None) -> str:
    return "-" if summary is None else f"{summary['p50_ms']:.3f}"


def _by_part(slow: dict[str, Any]) -> str:
    parts = slow.get("max_ms_by_part") or {}
    if not parts:
        return ""
    return " (max by part: " + ", ".join(f"{p} {ms:.2f} ms" for p, ms in parts.items()) + ")"


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables (p50 ms, floors beside)."""
    lines: list[str] = []
    if report["turn"]:
        rows = [["backend", "messages", "turn p50", "p95", "windowed read", "floor", "window"]]
        for row in report["turn"]:
            rows.append(
                [
                    row["backend"],
                    f"{row['n']:,}",
                    _p50(row["turn"]),
                    f"{row['turn']['p95_ms']:.3f}",
                    _p50(row["windowed_read"]),
                    _p50(row["floor"]),
                    str(row["window_messages"]),
                ]
            )
        lines += ["agent turn, TokenBudgetReducer(8000), scripted model (ms)", *_cells(rows), ""]
    if report["sessions"]:
        rows = [["backend", "sessions", "page p50", "p95", "page floor", "info p50", "info floor"]]
        for row in report["sessions"]:
            rows.append(
                [
                    row["backend"],
                    f"{row['n']:,}",
                    _p50(row["list_page"]),
                    f"{row['list_page']['p95_ms']:.3f}",
                    _p50(row["list_floor"]),
                    _p50(row["info"]),
                    _p50(row["info_floor"]),
                ]
            )
        lines += ["list_sessions(limit=100, after=...) and session_info (ms)", *_cells(rows), ""]
    if report["export"]:
        rows = [["backend", "messages", "growth MB", "msg/s", "floor growth MB", "floor msg/s"]]
        for row in report["export"]:
            ours, floor = row["memweave"], row["floor"]
            rows.append(
                [
                    row["backend"],
                    f"{row['messages']:,}",
                    f"{ours['peak_growth_mb']:.1f}",
                    f"{ours['messages_per_s']:,.0f}",
                    f"{floor['peak_growth_mb']:.1f}",
                    f"{floor['messages_per_s']:,.0f}",
                ]
            )
        lines += ["streaming export, peak memory growth while reading", *_cells(rows), ""]
    cluster = report.get("cluster") or {}
    if cluster.get("status") == "measured":
        for name in ("memweave", "floor"):
            part = cluster[name]
            shares = ", ".join(f"{share:.0%}" for share in part["shares"])
            lines.append(
                f"cluster {name}: shares of commands per master {shares}; "
                f"append p50 {part['append']['p50_ms']:.3f} ms"
            )
    elif cluster:
        lines.append(f"cluster skipped: {cluster['reason']}")
    if report.get("slowlog"):
        for phase, slow in report["slowlog"].items():
            lines.append(
                f"redis SLOWLOG, {_PHASES.get(phase, phase)}: "
                f"max {slow['max_ms']:.2f} ms, {slow['over_10ms']} over 10 ms"
                f"{_by_part(slow)}"
            )
    for backend in report["backends"]:
        if backend["status"] != "measured":
            lines.append(f"skipped {backend['backend']}: {backend['reason']}")
    machine = report["machine"]
    lines.append(
        f"python {machine['python']} on {machine['machine']} ({machine['cpus']} cpus); "
        f"{report['seconds']} s; load average {machine.get('load_start')} at the start, "
        f"{machine.get('load_end')} at the end"
    )
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `python -m memweave.bench.scale`."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.scale",
        description="Time agent turns, session pages and streaming export at service scale.",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        help="default: sqlite postgresql mariadb redis (--quick: memory sqlite)",
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, help="default: all")
    parser.add_argument(
        "--sizes",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="history lengths and session counts both (see the next two)",
    )
    parser.add_argument(
        "--turn-sizes",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="history lengths for agent turns (default 1000 10000 100000)",
    )
    parser.add_argument(
        "--session-sizes",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="sessions stored (default 10000 100000 1000000)",
    )
    parser.add_argument(
        "--export-messages",
        type=positive_int,
        metavar="N",
        help="messages in the exported session (default 1000000)",
    )
    parser.add_argument("--turns", type=positive_int, help="rounds timed per size")
    parser.add_argument("--lookups", type=positive_int, help="session rounds timed per size")
    parser.add_argument(
        "--quick", action="store_true", help="1k / 10k on memory and SQLite, a few seconds"
    )
    parser.add_argument("--postgres-url", help="PostgreSQL URL (default: local test server)")
    parser.add_argument("--mysql-url", help="MariaDB URL (default: local test server)")
    parser.add_argument("--redis-url", help="use this Redis instead of a throwaway server")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--output", metavar="PATH", help="also write the JSON report to PATH")
    return parser


def options_from(args: argparse.Namespace) -> Options:
    """`Options` from parsed arguments (flags override `--quick`'s defaults)."""
    given: dict[str, Any] = {}
    for name in ("backends", "parts", "turn_sizes", "session_sizes"):
        value = getattr(args, name, None)
        if value is None and name.endswith("_sizes"):
            value = getattr(args, "sizes", None)
        if value is not None:
            given[name] = tuple(value)
    for name in ("export_messages", "turns", "lookups", "postgres_url", "mysql_url", "redis_url"):
        if getattr(args, name, None) is not None:
            given[name] = getattr(args, name)
    return Options.quick(**given) if args.quick else Options(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    options = options_from(args)

    def write(report: dict[str, Any]) -> str:
        document = json.dumps(report, indent=2)
        if args.output:
            Path(args.output).write_text(document + "\n", encoding="utf-8")
        return document

    report = asyncio.run(run(options, lambda text: print(text, file=sys.stderr), write))
    document = write(report)
    print(document if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
