"""Reducer benchmark: cutting a long history to a token budget, turn after turn.

Run as `python -m memweave.bench.reducers` (`--help` for the options). On a history of
`--messages` realistic messages it measures, in one run:

- memweave's `TokenBudgetReducer`: the first call (cold count cache) and the cost per turn of
  appending one message and reducing again; `MessageCountReducer` per turn likewise;
- the floor: slicing a window of the same length off the history;
- the naive baseline that re-encodes every message with tiktoken each turn;
- LangChain's `trim_messages` with a tiktoken counter that applies the same counting rule, when
  `langchain_core` is installed (extra `peers`), and whether both keep identical windows;
- a budgeted read through a history backend: a session of `--read-messages` messages (10 x
  `--messages` by default, so 100,000) stored in SQLite (a temporary file) and in Redis (at
  `--redis-url`, when reachable; under a fresh key prefix, its session cleared afterwards),
  read with `TokenBudgetReducer(--max-tokens)` and `reduce_on="read"`, next to a full
  `list_messages` plus `reduce` of the same session; both must keep the same window.

It prints a table, or with `--json` a JSON report holding the versions and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memweave._urls import mask_url
from memweave.bench._budgeted_read import TARGET_BUDGETED_READ_MS, run_budgeted_reads
from memweave.bench._cli import positive_int
from memweave.bench._env import machine, package_version
from memweave.bench._stats import Timings
from memweave.bench._workload import make_conversation
from memweave.messages import ChatMessage
from memweave.reducers import MessageCountReducer, TokenBudgetReducer, TokenCounter
from memweave.reducers._groups import select_window

__all__ = ["main", "run"]

TARGET_PER_TURN_MS = 0.5
TARGET_SPEEDUP_VS_LANGCHAIN = 1_000
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
READ_SESSION_FACTOR = 10
"""Without `--read-messages`, the read workload's session is this many times `--messages`."""


@dataclass
class Options:
    """What to measure; see `--help`."""

    messages: int = 10_000
    max_tokens: int = 4_000
    turns: int = 200
    baseline_turns: int = 3
    peer_turns: int = 3
    seed: int = 0
    model: str = "gpt-4o"
    peers: bool = True
    read_messages: int | None = None
    """Length of the session read through the backends; `None`: 10 x `messages`; 0 skips."""
    read_repeats: int = 50
    """Budgeted reads timed per backend, after a first one timed on its own."""
    full_reads: int = 3
    """Full `list_messages` + `reduce` baseline reads timed per backend."""
    redis_url: str | None = DEFAULT_REDIS_URL
    """Redis server for the read workload; `None` skips Redis."""

    @property
    def read_session_messages(self) -> int:
        """The read workload's session length, with the default applied."""
        if self.read_messages is None:
            return READ_SESSION_FACTOR * self.messages
        return self.read_messages


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter_ns()
    result = action()
    return (time.perf_counter_ns() - started) / 1e6, result


async def _timed_reduce(
    reducer: TokenBudgetReducer | MessageCountReducer,
    history: list[ChatMessage],
    message: ChatMessage | None = None,
) -> tuple[float, list[ChatMessage]]:
    """Append `message` (when given) to `history` and reduce it, timing both."""
    started = time.perf_counter_ns()
    if message is not None:
        history.append(message)
    window = await reducer.reduce(history)
    return (time.perf_counter_ns() - started) / 1e6, window


def _naive_window(
    counter: TokenCounter, history: list[ChatMessage], budget: int
) -> list[ChatMessage]:
    """Re-encode every message, as a reducer without a count cache does, then cut."""
    counts = {message.id: counter.count_message(message) for message in history}
    return select_window(
        history,
        budget=budget - TokenCounter.REPLY_PRIMING,
        cost=lambda message: counts[message.id],
        keep_system=True,
        start_on_user=True,
    ).messages


def _is_valid(window: Sequence[ChatMessage], history: Sequence[ChatMessage]) -> bool:
    """Whether `window` keeps each tool call of `history` with all of its results, or neither."""
    kept = {message.id for message in window}
    callers = {call.id: message.id for message in history for call in message.tool_calls}
    return all(
        (message.id in kept) == (callers[message.tool_call_id] in kept)
        for message in history
        if message.role == "tool" and message.tool_call_id in callers
    )


class _LangChain:
    """`trim_messages` driven with a tiktoken counter applying memweave's counting rule."""

    def __init__(self, counter: TokenCounter) -> None:
        from langchain_core import messages as lc

        self.lc = lc
        self.count_text = counter.count_text
        self.roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}

    def convert(self, message: ChatMessage) -> Any:
        lc = self.lc
        if message.role == "system":
            return lc.SystemMessage(message.text, id=message.id, name=message.name)
        if message.role == "user":
            return lc.HumanMessage(message.text, id=message.id, name=message.name)
        if message.role == "tool":
            assert message.tool_call_id is not None
            return lc.ToolMessage(message.text, tool_call_id=message.tool_call_id, id=message.id)
        calls = [
            {"name": call.name, "args": json.loads(call.arguments), "id": call.id}
            for call in message.tool_calls
        ]
        return lc.AIMessage(message.text, tool_calls=calls, id=message.id, name=message.name)

    def count(self, messages: list[Any]) -> int:
        """Count like `TokenCounter.count`; the LangChain docs' tiktoken counter, plus tools."""
        tokens_of = self.count_text
        tokens = TokenCounter.REPLY_PRIMING
        for message in messages:
            tokens += TokenCounter.TOKENS_PER_MESSAGE + tokens_of(self.roles[message.type])
            tokens += tokens_of(message.content)
            if message.name:
                tokens += tokens_of(message.name) + TokenCounter.TOKENS_PER_NAME
            for call in getattr(message, "tool_calls", ()):
                tokens += TokenCounter.TOKENS_PER_TOOL_CALL + tokens_of(call["name"])
                tokens += tokens_of(json.dumps(call["args"]))
        return tokens

    def trim(self, history: list[Any], budget: int) -> list[Any]:
        # trim_messages subtracts the system message's count *with* reply priming and then
        # counts the rest with priming again; 3 more tokens give the budget memweave uses.
        return list(
            self.lc.trim_messages(
                history,
                max_tokens=budget + TokenCounter.REPLY_PRIMING,
                token_counter=self.count,
                strategy="last",
                include_system=True,
                start_on="human",
                allow_partial=False,
            )
        )


async def run(options: Options) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready report."""
    total = options.messages + max(options.turns, options.baseline_turns, options.peer_turns)
    conversation = make_conversation(total, seed=options.seed)
    base = conversation[: options.messages]
    incoming = conversation[options.messages :]
    counter = TokenCounter(options.model)
    counter.count_text("warm up the encoding")
    budget = options.max_tokens
    results: dict[str, Any] = {}

    gc.collect()
    reducer = TokenBudgetReducer(budget, counter=counter)
    first_ms, window = await _timed_reduce(reducer, list(base))
    results["first_call_ms"] = first_ms
    results["window_messages"] = len(window)
    results["window_tokens"] = counter.count(window)
    results["history_tokens"] = counter.count(base)

    history = list(base)
    per_turn = Timings()
    floor = Timings()
    for message in incoming[: options.turns]:
        elapsed, window = await _timed_reduce(reducer, history, message)
        per_turn.samples.append(elapsed)
        started = time.perf_counter_ns()
        history[-len(window) :]
        floor.samples.append((time.perf_counter_ns() - started) / 1e6)
    results["per_turn"] = per_turn.summary()
    results["floor_slice"] = floor.summary()

    history = list(base)
    by_count = MessageCountReducer(max(1, results["window_messages"]))
    await by_count.reduce(history)
    count_turn = Timings()
    for message in incoming[: options.turns]:
        count_turn.samples.append((await _timed_reduce(by_count, history, message))[0])
    results["count_reducer_per_turn"] = count_turn.summary()

    history = list(base)
    uncached = TokenCounter(options.model, cache_size=0)
    naive = Timings()
    for message in incoming[: options.baseline_turns]:
        history.append(message)
        elapsed, naive_window = _timed(lambda: _naive_window(uncached, history, budget))
        naive.samples.append(elapsed)
        ours = await reducer.reduce(history)
        if [m.id for m in naive_window] != [m.id for m in ours]:
            raise RuntimeError("the naive baseline kept a different window than memweave")
    results["naive_per_turn"] = naive.summary() if naive.samples else None
    results["speedup_vs_naive"] = (
        naive.summary()["p50_ms"] / per_turn.summary()["p50_ms"] if naive.samples else None
    )

    results["langchain"] = await _run_langchain(options, counter, reducer, base, incoming, per_turn)
    results["budgeted_read"] = await run_budgeted_reads(options, counter)
    speedup = results["langchain"].get("speedup")
    read_p50s = [
        backend["read"]["p50_ms"]
        for backend in results["budgeted_read"]["backends"].values()
        if backend["status"] == "measured"
    ]
    results["targets"] = {
        "per_turn_p50_ms_below": TARGET_PER_TURN_MS,
        "per_turn_met": per_turn.summary()["p50_ms"] < TARGET_PER_TURN_MS,
        "speedup_vs_langchain_at_least": TARGET_SPEEDUP_VS_LANGCHAIN,
        "speedup_vs_langchain_met": (
            None if speedup is None else speedup >= TARGET_SPEEDUP_VS_LANGCHAIN
        ),
        "budgeted_read_p50_ms_below": TARGET_BUDGETED_READ_MS,
        "budgeted_read_met": (max(read_p50s) < TARGET_BUDGETED_READ_MS if read_p50s else None),
    }
    return {
        "suite": "reducers",
        "parameters": {
            "messages": options.messages,
            "max_tokens": options.max_tokens,
            "turns": options.turns,
            "baseline_turns": options.baseline_turns,
            "peer_turns": options.peer_turns,
            "seed": options.seed,
            "model": options.model,
            "encoding": counter.encoding_name,
            "read_messages": options.read_session_messages,
            "read_repeats": options.read_repeats,
            "full_reads": options.full_reads,
            "redis_url": None if options.redis_url is None else mask_url(options.redis_url),
        },
        "versions": {
            "memweave": package_version("memweave"),
            "tiktoken": package_version("tiktoken"),
            "langchain_core": package_version("langchain-core"),
            "sqlalchemy": package_version("sqlalchemy"),
            "aiosqlite": package_version("aiosqlite"),
            "redis": package_version("redis"),
        },
        "machine": machine(),
        "results": results,
    }


async def _run_langchain(
    options: Options,
    counter: TokenCounter,
    reducer: TokenBudgetReducer,
    base: list[ChatMessage],
    incoming: list[ChatMessage],
    ours: Timings,
) -> dict[str, Any]:
    if not options.peers:
        return {"status": "skipped", "reason": "--no-peers"}
    try:
        peer = _LangChain(counter)
    except ImportError:
        return {
            "status": "skipped",
            "reason": "langchain_core is not installed (pip install 'memweave[peers]')",
        }
    history = list(base)
    converted = [peer.convert(message) for message in history]
    timings = Timings()
    identical = 0
    compared = 0
    for message in incoming[: options.peer_turns]:
        history.append(message)
        converted.append(peer.convert(message))
        elapsed, trimmed = _timed(lambda: peer.trim(converted, options.max_tokens))
        timings.samples.append(elapsed)
        window = await reducer.reduce(history)
        by_id = {m.id: m for m in history}
        theirs = [by_id[str(m.id)] for m in trimmed]
        if _is_valid(theirs, history) and _is_valid(window, history):
            compared += 1
            identical += [m.id for m in theirs] == [m.id for m in window]
    if not timings.samples:
        return {"status": "skipped", "reason": "--peer-turns 0"}
    summary = timings.summary()
    return {
        "status": "measured",
        "per_turn": summary,
        "speedup": summary["p50_ms"] / ours.summary()["p50_ms"],
        "windows_compared": compared,
        "windows_identical": identical,
    }


def _format_table(report: dict[str, Any]) -> str:
    results = report["results"]
    params = report["parameters"]
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, summary: dict[str, Any] | None, note: str = "") -> None:
        if summary is None:
            rows.append((name, "-", "-", note))
            return
        rows.append((name, f"{summary['p50_ms']:.4f}", f"{summary['p95_ms']:.4f}", note))

    rows.append(("TokenBudgetReducer, first call", f"{results['first_call_ms']:.4f}", "-", ""))
    add("TokenBudgetReducer, per turn", results["per_turn"], f"target < {TARGET_PER_TURN_MS} ms")
    add("MessageCountReducer, per turn", results["count_reducer_per_turn"])
    add("floor: slicing the window", results["floor_slice"])
    naive_speedup = results["speedup_vs_naive"]
    add(
        "naive: re-encode every message",
        results["naive_per_turn"],
        f"memweave {naive_speedup:,.0f}x faster" if naive_speedup else "",
    )
    peer = results["langchain"]
    if peer["status"] == "measured":
        add(
            "LangChain trim_messages + tiktoken",
            peer["per_turn"],
            f"memweave {peer['speedup']:,.0f}x faster; identical windows "
            f"{peer['windows_identical']}/{peer['windows_compared']}",
        )
    else:
        rows.append(("LangChain trim_messages + tiktoken", "skipped", "-", peer["reason"]))
    reads = results["budgeted_read"]
    for name, backend in reads["backends"].items():
        label = f"budgeted read, {name}"
        if backend["status"] != "measured":
            rows.append((label, "skipped", "-", backend["reason"]))
            continue
        add(
            label,
            backend["read"],
            f"target < {TARGET_BUDGETED_READ_MS:g} ms; first read "
            f"{backend['first_read_ms']:.2f} ms; {backend['window_messages']} messages kept",
        )
        speedup = backend["speedup_vs_full_read"]
        add(
            f"full read + reduce, {name}",
            backend["full_read_reduce"],
            f"budgeted read {speedup:,.0f}x faster" if speedup else "",
        )
    header = ("operation", "p50 ms", "p95 ms", "note")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [
        f"memweave reducers: {params['messages']:,} messages "
        f"({results['history_tokens']:,} tokens, {params['encoding']}) cut to "
        f"{params['max_tokens']:,} tokens -> {results['window_messages']} messages, "
        f"{results['window_tokens']:,} tokens; {params['turns']} turns",
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    for row in rows:
        name, p50, p95, note = row
        cells = [name.ljust(widths[0]), p50.rjust(widths[1]), p95.rjust(widths[2]), note]
        lines.append("  ".join(cells).rstrip())
    machine = report["machine"]
    if any(b["status"] == "measured" for b in reads["backends"].values()):
        lines.append(
            f"budgeted reads: a {reads['messages']:,}-message session read with "
            f"TokenBudgetReducer({reads['max_tokens']:,}) and reduce_on='read'"
        )
    lines.append(
        f"python {machine['python']} on {machine['machine']} ({machine['cpus']} cpus); "
        f"tiktoken {report['versions']['tiktoken']}, "
        f"langchain-core {report['versions']['langchain_core'] or 'not installed'}"
    )
    return "\n".join(lines)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `python -m memweave.bench.reducers`."""
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.reducers",
        description="Time memweave's reducers against a naive baseline and LangChain.",
    )
    parser.add_argument(
        "--messages", type=positive_int, default=defaults.messages, help="history length"
    )
    parser.add_argument(
        "--max-tokens", type=positive_int, default=defaults.max_tokens, help="token budget"
    )
    parser.add_argument(
        "--turns", type=positive_int, default=defaults.turns, help="turns timed for memweave"
    )
    parser.add_argument(
        "--baseline-turns",
        type=_non_negative,
        default=defaults.baseline_turns,
        help="turns timed for the naive re-encoding baseline (slow)",
    )
    parser.add_argument(
        "--peer-turns",
        type=_non_negative,
        default=defaults.peer_turns,
        help="turns timed for LangChain's trim_messages (slow)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="workload seed")
    parser.add_argument("--model", default=defaults.model, help="model whose encoding counts")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip LangChain even when it is installed"
    )
    parser.add_argument(
        "--read-messages",
        type=_non_negative,
        default=defaults.read_messages,
        help=f"session length for the budgeted reads (default: {READ_SESSION_FACTOR} x "
        "--messages; 0 skips them)",
    )
    parser.add_argument(
        "--read-repeats",
        type=positive_int,
        default=defaults.read_repeats,
        help="budgeted reads timed per backend",
    )
    parser.add_argument(
        "--full-reads",
        type=_non_negative,
        default=defaults.full_reads,
        help="full list_messages + reduce reads timed per backend (slow)",
    )
    parser.add_argument(
        "--redis-url",
        default=defaults.redis_url,
        help="Redis server for the budgeted reads (skipped when unreachable)",
    )
    parser.add_argument("--no-redis", action="store_true", help="budgeted reads on SQLite only")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--output", metavar="PATH", help="also write the JSON report to PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    options = Options(
        messages=args.messages,
        max_tokens=args.max_tokens,
        turns=args.turns,
        baseline_turns=args.baseline_turns,
        peer_turns=args.peer_turns,
        seed=args.seed,
        model=args.model,
        peers=not args.no_peers,
        read_messages=args.read_messages,
        read_repeats=args.read_repeats,
        full_reads=args.full_reads,
        redis_url=None if args.no_redis else args.redis_url,
    )
    report = asyncio.run(run(options))
    document = json.dumps(report, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(document + "\n")
    print(document if args.json else _format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
