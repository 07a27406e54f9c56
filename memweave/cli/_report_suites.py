"""The suites' sections of `report.md` that `_report` renders itself (history, reducers),
the Markdown helpers every section uses, and `SECTIONS`, which says where each part of
`results.json` is shown."""

from __future__ import annotations

from typing import Any

__all__ = ["SECTIONS", "history_section", "markdown_table", "ms", "reducers_section"]

_HISTORY = "## History backends"
_REDUCERS = "## Reducers"
SECTIONS: dict[str, dict[str, str | None]] = {
    "": {
        "manifest": "# memweave benchmark report",
        "history": _HISTORY,
        "reducers": _REDUCERS,
        "scale": "## Service scale",
        "retrieval": "## Retrieval (LoCoMo)",
    },
    "history": {
        "suite": None,
        "urls": None,
        "sizes": None,
        "environment": None,
        "results": _HISTORY,
        "peers": "### Peers",
        "sync_face": "### The blocking face (memweave.sync)",
        "retry_overhead": "### Cost of timeouts and retries",
    },
    "reducers": {
        "suite": None,
        "parameters": None,
        "versions": None,
        "machine": None,
        "results": _REDUCERS,
    },
    "reducers.results": {
        "first_call_ms": _REDUCERS,
        "window_messages": _REDUCERS,
        "window_tokens": _REDUCERS,
        "history_tokens": _REDUCERS,
        "per_turn": _REDUCERS,
        "floor_slice": _REDUCERS,
        "count_reducer_per_turn": _REDUCERS,
        "naive_per_turn": _REDUCERS,
        "speedup_vs_naive": _REDUCERS,
        "langchain": _REDUCERS,
        "budgeted_read": "### Budgeted reads through a backend",
        "targets": "### Reducer targets",
    },
}
"""Where report.md shows each part of `results.json`, by the path of the part's parent
(`""` is the document itself): the heading of its section, or None for the settings and
versions a suite records beside its figures (the report's header names the versions; the rest
stays in `results.json`). A part missing here is a part the report leaves out."""


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    align = ["---:" if index in right else "---" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def ms(value: object) -> str:
    """A latency in ms for a table: four significant digits, `-` for none."""
    return "-" if value is None else f"{float(value):.4g}"  # type: ignore[arg-type]


def history_section(result: dict[str, Any]) -> list[str]:
    """The history suite's section: latency per backend beside its floor, the peers, the
    blocking face and the cost of timeouts and retries."""
    rows = []
    for row in result["results"]:
        floor = row.get("floor_p50_ms")
        ratio = f"{row['p50_ms'] / floor:.2f}x" if floor else "-"
        rows.append(
            [
                row["backend"],
                f"{row['n']:,}",
                row["operation"],
                ms(row["p50_ms"]),
                ms(row["p95_ms"]),
                ms(floor),
                ratio,
            ]
        )
    return [
        _HISTORY,
        "",
        "Latency per call; the floor is the raw client (redis-py, SQLAlchemy Core) doing the "
        "same storage work in the same run.",
        "",
        *_table(
            ["backend", "N", "operation", "p50 ms", "p95 ms", "floor p50 ms", "vs floor"],
            rows,
            right={1, 3, 4, 5, 6},
        ),
        "",
        *_history_peers(result),
        "![append latency](history_append.png)",
        "",
        "![read latency](history_read.png)",
        "",
        *_history_faces(result.get("sync_face") or []),
        *_history_overhead(result.get("retry_overhead") or []),
    ]


def _history_faces(rows: list[dict[str, Any]]) -> list[str]:
    """The blocking face's calls beside the async ones (issue 12's target)."""
    if not rows:
        return []
    table = [
        [
            row["backend"],
            f"{row['n']:,}",
            row["operation"],
            ms(row["async_p50_ms"]),
            ms(row["sync_p50_ms"]),
            f"{row['sync_overhead_us']:.1f}",
            str(row["samples"]),
            "met" if row["within_target"] else "missed",
        ]
        for row in rows
    ]
    header = ["backend", "N", "operation", "async p50 ms", "blocking p50 ms", "+µs", "calls"]
    return [
        str(SECTIONS["history"]["sync_face"]),
        "",
        "The same calls through `memweave.sync` and through the async provider, in alternating "
        "blocks on two sessions of the same N messages. Target: blocking p50 at most 1.3 x "
        "async p50 + 50 µs.",
        "",
        *_table([*header, "target"], table, right={1, 3, 4, 5, 6}),
        "",
    ]


def _history_overhead(rows: list[dict[str, Any]]) -> list[str]:
    """append_1 with the timeout and retry wrapper (and pool_pre_ping) on and off."""
    if not rows:
        return []
    table = [
        [
            row["backend"],
            row["variant"],
            ms(row["p50_ms"]),
            ms(row["bare_p50_ms"]),
            f"{row['overhead_us']:.1f}",
            f"{row['overhead_pct']:.2f}",
            str(row["samples"]),
            ("met" if row["within_target"] else "missed")
            if row["variant"] == "timeout+retries"
            else "-",
        ]
        for row in rows
    ]
    header = ["backend", "variant", "on p50 ms", "off p50 ms", "+µs", "+%", "pairs", "target"]
    return [
        str(SECTIONS["history"]["retry_overhead"]),
        "",
        "append_1 with memweave's default timeout and retries against the same provider built "
        "with `timeout=None, retries=0`, in pairs in the same run (target: at most 3%); on "
        "PostgreSQL and MariaDB also raw inserts with and without `pool_pre_ping`.",
        "",
        *_table(header, table, right={2, 3, 4, 5, 6}),
        "",
    ]


def _history_peers(result: dict[str, Any]) -> list[str]:
    """The peers measured beside memweave, and the ones skipped, with why."""
    statuses: list[dict[str, Any]] = result.get("peers") or []
    rows = []
    for row in result["results"]:
        for peer in row.get("peers") or []:
            ratio = peer.get("ratio_to_memweave")
            rows.append(
                [
                    row["backend"],
                    f"{row['n']:,}",
                    row["operation"],
                    peer["peer"],
                    ms(peer["p50_ms"]),
                    ms(peer["p95_ms"]),
                    str(peer["samples"]),
                    ms(row["p50_ms"]),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    peer.get("note") or "",
                ]
            )
    if not rows and not statuses:
        return []
    lines = [
        "### Peers",
        "",
        "The stores users compare memweave with, on the same server in the same run, each "
        "through its own public async API on a fresh session of the same messages (converted "
        "before timing). `vs memweave` is the peer's p50 over memweave's: above 1, the peer "
        "is slower. `runs` counts the timed calls: a slow peer stops after about 5 seconds "
        "per operation (at least 3 calls; 0.5 seconds with --quick).",
        "",
    ]
    if rows:
        header = ["backend", "N", "operation", "peer", "p50 ms", "p95 ms", "runs"]
        header += ["memweave p50 ms", "vs memweave", "note"]
        lines += [*_table(header, rows, right={1, 4, 5, 6, 7, 8}), ""]
    for status in statuses:
        version = f" {status['version']}" if status.get("version") else ""
        where = f"{status['peer']} ({status['package']}{version}) on {status['backend']}"
        if status["status"] == "measured":
            notes = "; ".join(status.get("notes") or [])
            lines.append(f"- {where}" + (f": {notes}" if notes else ""))
        else:
            lines.append(f"- skipped {where}: {status.get('reason')}")
    return [*lines, ""] if statuses else lines


def reducers_section(result: dict[str, Any]) -> list[str]:
    """The reducers suite's section: cost per turn of each way to cut a history, budgeted
    reads through the backends, and the targets."""
    results = result["results"]
    params = result.get("parameters", {})
    rows: list[list[str]] = [
        ["TokenBudgetReducer, first call", ms(results.get("first_call_ms")), "-", ""]
    ]

    def add(label: str, summary: dict[str, Any] | None, note: str = "") -> None:
        if summary:
            rows.append([label, ms(summary["p50_ms"]), ms(summary["p95_ms"]), note])

    add("TokenBudgetReducer, per turn", results.get("per_turn"))
    add("MessageCountReducer, per turn", results.get("count_reducer_per_turn"))
    add("floor: slicing the window", results.get("floor_slice"))
    speedup = results.get("speedup_vs_naive")
    add(
        "naive: re-encode every message",
        results.get("naive_per_turn"),
        f"memweave {speedup:,.0f}x faster" if speedup else "",
    )
    peer = results.get("langchain") or {}
    if peer.get("status") == "measured":
        add(
            "LangChain trim_messages + tiktoken",
            peer["per_turn"],
            f"memweave {peer['speedup']:,.0f}x faster; identical windows "
            f"{peer['windows_identical']}/{peer['windows_compared']}",
        )
    elif peer:
        rows.append(["LangChain trim_messages + tiktoken", "skipped", "-", peer.get("reason", "")])
    intro = (
        f"{params.get('messages', 0):,} messages ({results.get('history_tokens', 0):,} tokens, "
        f"{params.get('encoding', '?')}) cut to {params.get('max_tokens', 0):,} tokens "
        f"({results.get('window_messages', '?')} messages kept); {params.get('turns', '?')} "
        "turns of one new message each."
    )
    return [
        _REDUCERS,
        "",
        intro,
        "",
        *_table(["operation", "p50 ms", "p95 ms", "note"], rows, right={1, 2}),
        "",
        "![reducer cost per turn](reducers.png)",
        "",
        *_budgeted_reads(results.get("budgeted_read")),
        *_reducer_targets(results.get("targets")),
    ]


def _budgeted_reads(reads: dict[str, Any] | None) -> list[str]:
    """One long session read with `reduce_on="read"`, beside a full read plus reduce."""
    if not reads:
        return []
    rows = []
    skipped = []
    for name, entry in (reads.get("backends") or {}).items():
        if entry.get("status") != "measured":
            skipped.append(f"- skipped {name}: {entry.get('reason')}")
            continue
        full = entry.get("full_read_reduce") or {}
        speedup = entry.get("speedup_vs_full_read")
        rows.append(
            [
                name,
                ms(entry["read"]["p50_ms"]),
                ms(entry["read"]["p95_ms"]),
                ms(entry.get("first_read_ms")),
                ms(full.get("p50_ms")),
                "-" if speedup is None else f"{speedup:,.0f}x",
                f"{entry.get('window_messages', 0):,}",
                "met" if entry.get("target_met") else "missed",
            ]
        )
    header = ["backend", "p50 ms", "p95 ms", "first read ms", "full read + reduce p50 ms"]
    header += ["faster", "kept", "target"]
    lines = [
        str(SECTIONS["reducers.results"]["budgeted_read"]),
        "",
        f"A session of {reads.get('messages', 0):,} messages read through the backend with "
        f'`TokenBudgetReducer({reads.get("max_tokens", 0)})` and `reduce_on="read"` (only '
        "the kept tail is read), beside `list_messages` of the whole session plus `reduce`; "
        f"both keep the same window. Target: p50 below {reads.get('target_p50_ms_below'):g} ms.",
        "",
    ]
    if rows:
        lines += [*_table(header, rows, right={1, 2, 3, 4, 5, 6}), ""]
    return [*lines, *skipped, ""] if skipped else lines


def _reducer_targets(targets: dict[str, Any] | None) -> list[str]:
    """Each reducer target with its verdict."""
    if not targets:
        return []

    def verdict(key: str) -> str:
        value = targets.get(key)
        return "not measured" if value is None else ("met" if value else "missed")

    return [
        str(SECTIONS["reducers.results"]["targets"]),
        "",
        f"- TokenBudgetReducer per turn, p50 below {targets.get('per_turn_p50_ms_below')} ms: "
        + verdict("per_turn_met"),
        f"- at least {targets.get('speedup_vs_langchain_at_least'):,}x faster than LangChain "
        "trim_messages: " + verdict("speedup_vs_langchain_met"),
        f"- budgeted read p50 below {targets.get('budgeted_read_p50_ms_below')} ms on every "
        "backend: " + verdict("budgeted_read_met"),
        "",
    ]


def markdown_table(
    header: list[str], rows: list[list[str]], right: set[int] | None = None
) -> list[str]:
    """A Markdown table; `right` holds the indexes of right-aligned columns."""
    return _table(header, rows, right)
