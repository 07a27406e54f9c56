"""`memweave bench <suite>|all`: run the benchmark suites, record everything.

Each run writes into `--out DIR` (default `./bench-results/<UTC timestamp>`): `results.json`
(a manifest with the command, versions, machine, git commit, backends, dataset hash and
settings, then each suite's raw results), `report.md` (tables) and PNG charts. The suites are
the `memweave.bench.<suite>` modules, shipped in the wheel and called as libraries.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

from memweave.cli import _qa, _report, _retrieval, _scale
from memweave.cli._common import (
    err_console,
    positive_int,
    progress_bar,
    scrub,
    secrets_in,
    suite_module,
)
from memweave.errors import MissingDependency

__all__ = ["add_parser", "run_bench"]

SUITES = ("history", "reducers", "retrieval", "scale")


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `bench` and its suites on the top-level parser."""
    bench = commands.add_parser(
        "bench",
        help="run the benchmarks; write results.json, report.md and PNG charts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = bench.add_subparsers(dest="suite", required=True, metavar="SUITE")
    helps = {
        "history": "append and read latency of history backends against N, with raw floors",
        "reducers": "per-turn cost of cutting a long history to a token budget",
        "retrieval": "LoCoMo evidence recall@k per category and mode, and query latency",
        "scale": "agent turns, session pages and streaming export at 1k to 1M, with floors",
        "all": "every suite into one report (scale: its quick run on memory and SQLite)",
    }
    for name, text in helps.items():
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--out",
            type=Path,
            metavar="DIR",
            help="folder for the results (default: ./bench-results/<timestamp>)",
        )
        if name != "retrieval":
            parser.add_argument(
                "--quick",
                action="store_true",
                help="few repetitions and small inputs for history, reducers and scale "
                "(smoke runs); retrieval always reads the whole data file",
            )
        if name in ("history", "all"):
            parser.add_argument(
                "--url",
                action="append",
                metavar="URL",
                help="history backend URL, repeatable (default: memory:// and a temporary "
                "SQLite file)",
            )
            parser.add_argument(
                "--sizes",
                type=positive_int,
                nargs="+",
                metavar="N",
                help="history lengths (default: 100 1000 10000; --quick: 100 1000)",
            )
        if name == "scale":
            _scale.add_arguments(parser)
        if name not in ("retrieval", "scale"):
            peers = {
                "history": "Agent Framework and LangChain histories",
                "reducers": "LangChain",
                "all": "LangChain and Agent Framework",
            }[name]
            parser.add_argument(
                "--no-peers", action="store_true", help=f"skip {peers} even when installed"
            )
        if name in ("reducers", "all"):
            parser.add_argument(
                "--messages", type=positive_int, metavar="N", help="history length for reducers"
            )
            parser.add_argument(
                "--max-tokens", type=positive_int, metavar="N", help="token budget for reducers"
            )
            parser.add_argument(
                "--turns", type=positive_int, metavar="N", help="turns timed per reducer"
            )
        if name in ("retrieval", "all"):
            _retrieval.add_arguments(parser)
        parser.set_defaults(func=run_bench, suites=list(SUITES) if name == "all" else [name])
    _qa.add_parser(sub)  # needs a chat model, so never part of `all`


def _default_out() -> Path:
    return Path("bench-results") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


async def _history(
    args: argparse.Namespace, console: Console, manifest: dict[str, Any], tmp: Path
) -> dict[str, Any]:
    module = suite_module("history")
    urls: list[str] = args.url or ["memory://", f"sqlite+aiosqlite:///{tmp / 'history.db'}"]
    sizes: list[int] = args.sizes or ([100, 1000] if args.quick else [100, 1000, 10000])
    manifest["backends"] = [await _report.backend_info(url) for url in urls]
    manifest["history"] = {"sizes": sizes, "quick": args.quick, "peers": not args.no_peers}
    merged: dict[str, Any] | None = None
    with progress_bar(console, "runs") as progress:
        task = progress.add_task("history", total=len(urls) * len(sizes))
        for url, backend in zip(urls, manifest["backends"], strict=True):
            for size in sizes:
                progress.update(task, description=f"history: {backend['backend']}, N={size:,}")
                part: dict[str, Any] = await module.run(
                    [url], [size], quick=args.quick, peers=not args.no_peers
                )
                peers: list[dict[str, Any]] = part.get("peers", [])
                if merged is None:
                    merged = part
                    merged["urls"] = [backend["url"] for backend in manifest["backends"]]
                    merged["sizes"] = sizes
                    merged["peers"] = []
                else:
                    merged["results"].extend(part["results"])
                    merged["sync_face"] = merged.get("sync_face", []) + part.get("sync_face", [])
                    if size == sizes[0]:  # timed once per backend, not per size
                        overhead = part.get("retry_overhead", [])
                        merged["retry_overhead"] = merged.get("retry_overhead", []) + overhead
                # One entry per backend and peer, however many sizes ran.
                seen = {(peer["url"], peer["peer"]) for peer in merged["peers"]}
                merged["peers"] += [
                    peer for peer in peers if (peer["url"], peer["peer"]) not in seen
                ]
                progress.advance(task)
    assert merged is not None
    return merged


async def _reducers(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    module = suite_module("reducers")
    defaults = module.Options()
    quick = {"messages": 2_000, "turns": 20, "baseline_turns": 1, "peer_turns": 1}
    fields = {
        "messages": args.messages or (quick["messages"] if args.quick else defaults.messages),
        "max_tokens": args.max_tokens or defaults.max_tokens,
        "turns": args.turns or (quick["turns"] if args.quick else defaults.turns),
        "peers": not args.no_peers,
    }
    if args.quick:
        fields["baseline_turns"] = quick["baseline_turns"]
        fields["peer_turns"] = quick["peer_turns"]
    options = module.Options(**fields)
    with console.status(f"reducers: {options.messages:,} messages, {options.turns} turns"):
        result: dict[str, Any] = await module.run(options)
    return result


def _print_summary(console: Console, results: dict[str, Any]) -> None:
    if "history" in results:
        table = Table(title="history: p50 ms (floor = raw client, same run)")
        for column in ("backend", "N", "operation", "p50", "p95", "floor", "vs floor"):
            table.add_column(
                column, justify="left" if column in ("backend", "operation") else "right"
            )
        for row in results["history"]["results"]:
            floor = row.get("floor_p50_ms")
            table.add_row(
                row["backend"],
                f"{row['n']:,}",
                row["operation"],
                f"{row['p50_ms']:.3f}",
                f"{row['p95_ms']:.3f}",
                f"{floor:.3f}" if floor else "-",
                f"{row['p50_ms'] / floor:.2f}x" if floor else "-",
            )
        console.print(table)
        _print_history_peers(console, results["history"])
    if "reducers" in results:
        reducers = results["reducers"]["results"]
        table = Table(title="reducers: ms per turn")
        for column in ("operation", "p50", "p95"):
            table.add_column(column, justify="left" if column == "operation" else "right")
        for label, key in (
            ("TokenBudgetReducer", "per_turn"),
            ("MessageCountReducer", "count_reducer_per_turn"),
            ("floor: slicing", "floor_slice"),
            ("naive re-encoding", "naive_per_turn"),
        ):
            summary = reducers.get(key)
            if summary:
                table.add_row(label, f"{summary['p50_ms']:.4f}", f"{summary['p95_ms']:.4f}")
        peer = reducers.get("langchain") or {}
        if peer.get("status") == "measured":
            summary = peer["per_turn"]
            table.add_row(
                "LangChain trim_messages", f"{summary['p50_ms']:.4f}", f"{summary['p95_ms']:.4f}"
            )
        console.print(table)
    if "scale" in results:
        _scale.print_summary(console, results["scale"])
    if "retrieval" in results:
        _retrieval.print_summary(console, results["retrieval"])


def _print_history_peers(console: Console, history: dict[str, Any]) -> None:
    rows = [(row, peer) for row in history["results"] for peer in row.get("peers", [])]
    if rows:
        table = Table(title="history peers: p50 ms, same run and workload (p95, notes: report.md)")
        for column in ("backend", "N", "operation", "peer", "p50", "vs memweave"):
            left = column in ("backend", "operation", "peer")
            table.add_column(column, justify="left" if left else "right")
        for row, peer in rows:
            ratio = peer.get("ratio_to_memweave")
            table.add_row(
                row["backend"],
                f"{row['n']:,}",
                row["operation"],
                peer["peer"],
                f"{peer['p50_ms']:.3f}",
                "-" if ratio is None else f"{ratio:.2f}x",
            )
        console.print(table)
    for status in history.get("peers", []):
        if status["status"] != "measured":
            console.print(
                f"peer skipped: {status['peer']} on {status['backend']}: {status['reason']}"
            )


def _make_folder(out: Path) -> list[Path]:
    """Create `out` and its missing parents; return the folders made, deepest first."""
    made: list[Path] = []
    folder = out
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    out.mkdir(parents=True, exist_ok=True)
    return made


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run made, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # results were written into it (or it is gone): keep the rest
            return


async def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen suites and write `results.json`, `report.md` and the charts.

    Every option, the suites' modules, the LoCoMo file and the models are checked before any
    suite runs, so a mistake costs nothing. A run that fails before writing any result
    leaves no output folder behind.
    """
    console = err_console()
    suites: list[str] = args.suites
    for suite in suites:
        suite_module(suite)
    # matplotlib takes a second to import; only bench pays for it.
    try:
        from memweave.cli import _charts
    except ImportError as exc:
        raise MissingDependency("matplotlib", "cli") from exc
    say: Callable[[str], None] = console.print
    prepared = await _retrieval.prepare(args, say) if "retrieval" in suites else None
    try:
        out: Path = args.out or _default_out()
        made = _make_folder(out)
        try:
            charts = await _run_suites(args, console, prepared, out, _charts)
        except BaseException:
            _remove_empty(made)
            raise
    finally:
        if prepared is not None:
            await prepared.aclose()
    console.print(
        f"wrote {out / 'results.json'}, {out / 'report.md'} and {len(charts)} charts "
        f"({', '.join(path.name for path in charts)})"
    )
    return 0


async def _run_suites(
    args: argparse.Namespace,
    console: Console,
    prepared: _retrieval.Prepared | None,
    out: Path,
    charting: ModuleType,
) -> list[Path]:
    suites: list[str] = args.suites
    argv: list[str] = getattr(args, "argv", [])
    secrets = secrets_in(argv)
    manifest = _report.base_manifest(argv, suites)
    if prepared is not None:
        manifest["dataset"] = prepared.dataset_entry
    results: dict[str, Any] = {"manifest": manifest}
    charts: list[Path] = []
    sections: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="memweave-bench-") as tmp:
        if "history" in suites:
            results["history"] = await _history(args, console, manifest, Path(tmp))
            _report.write_results(out, results, secrets)
            charts += charting.history_charts(results["history"], out)
        if "reducers" in suites:
            results["reducers"] = await _reducers(args, console)
            manifest["reducers"] = results["reducers"].get("parameters")
            _report.write_results(out, results, secrets)
            charts += charting.reducer_charts(results["reducers"], out)
        if "scale" in suites:
            results["scale"] = await _scale.run(args, console)
            manifest["scale"] = results["scale"].get("parameters")
            _report.write_results(out, results, secrets)
            charts += charting.scale_charts(results["scale"], out)
            sections.append(_scale.section(results["scale"]))
        if prepared is not None:
            results["retrieval"] = await _retrieval.run(args, prepared, console, manifest)
            _report.write_results(out, results, secrets)
            charts += _retrieval.charts(results["retrieval"], manifest, out)
            sections.append(_retrieval.section(results["retrieval"], manifest))
    _report.write_results(out, results, secrets)
    report = _report.markdown_report(results, sections)
    (out / "report.md").write_text(scrub(report, secrets), encoding="utf-8")
    _print_summary(console, results)
    return charts
