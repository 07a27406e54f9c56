"""The scale suite of `memweave bench`: its options, the run, its console summary and report.

Agent turns, session pages and streaming export at service scale come from
`memweave.bench.scale`; `bench all` runs its quick version (1k / 10k on memory and SQLite).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from memweave.cli._common import positive_int, suite_module
from memweave.cli._report import markdown_table, ms

__all__ = ["BACKENDS", "PARTS", "add_arguments", "print_summary", "run", "section"]

BACKENDS = ("memory", "sqlite", "postgresql", "mariadb", "redis")
PARTS = ("turn", "sessions", "export", "cluster")
_PHASES = {
    "measured": "memweave's commands during the timed calls",
    "setup": "memweave's commands during seeding and clean-up",
    "floor": "the raw client's commands during the timed calls (the floors)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scale options to `bench scale`."""
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        help="default: sqlite postgresql mariadb redis (--quick: memory sqlite)",
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, help="default: all four")
    parser.add_argument(
        "--sizes",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="history lengths and session counts (default 1000 10000 100000 messages, "
        "10000 100000 1000000 sessions; --quick: 1000 10000)",
    )
    parser.add_argument(
        "--export-messages",
        type=positive_int,
        metavar="N",
        help="messages in the exported session (default 1000000; --quick: 20000)",
    )
    for flag, what in (
        ("--postgres-url", "PostgreSQL"),
        ("--mysql-url", "MariaDB"),
    ):
        parser.add_argument(flag, metavar="URL", help=f"{what} server (default: local)")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="use this Redis server (default: a throwaway redis-server the run starts)",
    )


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Run `memweave.bench.scale` with the options given (for `all`, its quick run)."""
    module = suite_module("scale")
    # `all` runs scale's quick version: a few seconds on memory and SQLite.
    options = module.Options.quick() if args.suite == "all" else module.options_from(args)
    with console.status("scale") as status:
        result: dict[str, Any] = await module.run(options, status.update)
    return result


def print_summary(console: Console, scale: dict[str, Any]) -> None:
    """Turn and page p50s, and the export's peak growth, on the console."""
    for part, title, columns in (
        ("turn", "scale: agent turn p50 ms", ("turn", "windowed_read", "floor")),
        ("sessions", "scale: session page p50 ms", ("list_page", "list_floor", "info")),
    ):
        if not scale.get(part):
            continue
        table = Table(title=title)
        for column in ("backend", "N", *columns):
            table.add_column(column, justify="left" if column == "backend" else "right")
        for row in scale[part]:
            cells = [f"{row[column]['p50_ms']:.3f}" for column in columns]
            table.add_row(row["backend"], f"{row['n']:,}", *cells)
        console.print(table)
    for row in scale.get("export", []):
        console.print(
            f"scale: export of {row['messages']:,} messages on {row['backend']}: peak growth "
            f"{row['memweave']['peak_growth_mb']:.1f} MB (floor "
            f"{row['floor']['peak_growth_mb']:.1f} MB)"
        )


# -- report.md ---------------------------------------------------------------------------------


def section(result: dict[str, Any]) -> list[str]:
    """Turns, session pages, export memory and Cluster spread, each beside its floor."""
    lines = [
        "## Service scale",
        "",
        "Each figure sits beside a floor timed in the same loop: the raw client (SQLAlchemy "
        "Core, redis-py, Python lists) answering the same question.",
        "",
    ]
    machine = result.get("machine") or {}
    if machine.get("load_start") is not None:
        lines += [
            f"Load average (1, 5, 15 min) at the start {machine['load_start']}, at the end "
            f"{machine.get('load_end')}, on {machine.get('cpus')} CPUs: other work on the "
            "machine slows every figure, floors included.",
            "",
        ]
    if result.get("turn"):
        growth = _growths(result["turn"], "turn")
        rows = [
            [
                row["backend"],
                f"{row['n']:,}",
                ms(row["turn"]["p50_ms"]),
                ms(row["turn"]["p95_ms"]),
                ms(row["windowed_read"]["p50_ms"]),
                ms(row["floor"]["p50_ms"]),
                str(row["window_messages"]),
                growth[row["backend"], row["n"]],
            ]
            for row in result["turn"]
        ]
        lines += [
            "Agent turn: `Agent(..., reducer=TokenBudgetReducer(8000))` with a scripted model "
            "(no network) on a session of N stored messages; the windowed read alone is "
            "`list_messages(reducer=...)`; the floor reads the window's number of newest rows "
            "and `json.loads` them.",
            "",
            *markdown_table(
                [
                    "backend",
                    "messages",
                    "turn p50 ms",
                    "p95 ms",
                    "windowed read p50 ms",
                    "floor p50 ms",
                    "window",
                    "vs smallest",
                ],
                rows,
                right={1, 2, 3, 4, 5, 6, 7},
            ),
            "",
        ]
    if result.get("sessions"):
        growth = _growths(result["sessions"], "list_page")
        rows = [
            [
                row["backend"],
                f"{row['n']:,}",
                ms(row["list_page"]["p50_ms"]),
                ms(row["list_page"]["p95_ms"]),
                ms(row["list_floor"]["p50_ms"]),
                growth[row["backend"], row["n"]],
                ms(row["info"]["p50_ms"]),
                ms(row["info_floor"]["p50_ms"]),
            ]
            for row in result["sessions"]
        ]
        lines += [
            "Sessions: `list_sessions(limit=100, after=<random id>)` and "
            "`session_info(<random id>)` with N sessions stored; the floors page and look up "
            "an index of the same ids (SQL primary key, Redis sorted set, `bisect`).",
            "",
            *markdown_table(
                [
                    "backend",
                    "sessions",
                    "page p50 ms",
                    "p95 ms",
                    "floor p50 ms",
                    "vs smallest",
                    "session_info p50 ms",
                    "floor p50 ms",
                ],
                rows,
                right={1, 2, 3, 4, 5, 6, 7},
            ),
            "",
        ]
    if result.get("turn") or result.get("sessions"):
        lines += ["![service scale](scale.png)", ""]
    lines += _scale_export(result)
    lines += _scale_cluster(result)
    for phase, slowlog in (result.get("slowlog") or {}).items():
        lines += [
            f"Redis SLOWLOG, {_PHASES.get(phase, phase)} (logged above "
            f"{slowlog['logged_slower_than_us']} µs): {slowlog['entries']} entries, slowest "
            f"{slowlog['max_ms']:.2f} ms, {slowlog['over_10ms']} over 10 ms"
            + "".join(
                f"; slowest in {part}: {value:.2f} ms"
                for part, value in (slowlog.get("max_ms_by_part") or {}).items()
            )
            + ".",
            "",
        ]
    lines += _scale_targets(result.get("targets") or {})
    for backend in result.get("backends", []):
        if backend.get("status") != "measured":
            lines.append(f"- skipped {backend['backend']}: {backend.get('reason')}")
    return lines


def _growths(rows: list[dict[str, Any]], key: str) -> dict[tuple[str, int], str]:
    """Each row's p50 as a multiple of its backend's smallest size."""
    smallest: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r["n"]):
        smallest.setdefault(row["backend"], row[key]["p50_ms"])
    return {
        (row["backend"], row["n"]): (
            f"{row[key]['p50_ms'] / smallest[row['backend']]:.2f}x"
            if smallest[row["backend"]] > 0
            else "-"
        )
        for row in rows
    }


def _scale_export(result: dict[str, Any]) -> list[str]:
    if not result.get("export"):
        return []
    rows = []
    for row in result["export"]:
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
    return [
        "Streaming export: one session read from first to last message with "
        "`iter_messages(page_size=500)` in a subprocess; peak memory growth while reading "
        "(the kernel's high-water mark, reset before the read). The floor pages the same rows "
        "with the raw client.",
        "",
        *markdown_table(
            [
                "backend",
                "messages",
                "peak growth MB",
                "messages/s",
                "floor growth MB",
                "floor messages/s",
            ],
            rows,
            right={1, 2, 3, 4, 5},
        ),
        "",
    ]


def _scale_cluster(result: dict[str, Any]) -> list[str]:
    cluster = result.get("cluster")
    if not cluster:
        return []
    if cluster.get("status") != "measured":
        return [f"Redis Cluster: skipped ({cluster.get('reason')}).", ""]
    rows = [
        [
            name,
            *(f"{share:.1%}" for share in cluster[name]["shares"]),
            ms(cluster[name]["append"]["p50_ms"]),
        ]
        for name in ("memweave", "floor")
    ]
    masters = [f"master {index + 1}" for index in range(cluster["masters"])]
    return [
        f"Redis Cluster ({cluster['masters']} masters, started by the benchmark): "
        f"{cluster['appends_per_session']} appends of one message to each of "
        f"{cluster['sessions']:,} sessions; each master's share of the data commands it "
        "served (`INFO commandstats`). The floor RPUSHes the same rows to one hash-tagged "
        "key per session.",
        "",
        *markdown_table(
            ["writer", *masters, "append p50 ms"], rows, right=set(range(1, len(masters) + 2))
        ),
        "",
    ]


def _scale_targets(targets: dict[str, Any]) -> list[str]:
    """One line per issue-11 target: measured, limit, met or missed."""
    lines = []
    names = {"turn": "agent turn", "list_page": "list_sessions page", "info": "session_info"}
    for backend, checks in (targets.get("by_backend") or {}).items():
        for key, check in checks.items():
            verdict = "met" if check["met"] else "missed"
            if key == "export":
                lines.append(
                    f"- {backend}, export of {check['messages']:,} messages: peak growth "
                    f"{check['peak_growth_mb']:.1f} MB (target < "
                    f"{targets['export_peak_growth_mb_below']:g} MB): {verdict}"
                )
                continue
            limit = targets["turn_p50_ms_at_most" if key == "turn" else "page_p50_ms_below"]
            lines.append(
                f"- {backend}, {names[key]} at {check['n']:,}: p50 {check['p50_ms']:.3g} ms "
                f"(target {limit:g} ms), {check['growth']}x the {check['smallest_n']:,} figure "
                f"(target {targets['growth_at_most']:g}x): {verdict}"
            )
    for key, label, limit in (
        ("cluster", "Cluster busiest master's share", "cluster_max_share_at_most"),
        ("slowlog", "Redis SLOWLOG slowest command (ms)", "slowlog_max_ms_at_most"),
    ):
        check = targets.get(key)
        if check:
            value = check.get("max_share", check.get("max_ms"))
            verdict = "met" if check["met"] else "missed"
            lines.append(f"- {label}: {value:.3g} (target {targets[limit]:g}): {verdict}")
    return ["### Targets (issue 11)", "", *lines, ""] if lines else []
