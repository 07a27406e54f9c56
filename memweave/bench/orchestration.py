"""Orchestration benchmark: what memweave's agent loop costs per step, beyond history and model.

Run as `python -m memweave.bench.orchestration` (`--help` for the options). An `Agent` with a
scripted model (`ScriptedChatClient`) and one sync tool answers `--turns` user turns in one
session stored on SQLite (a temporary file), pre-filled with `--history` messages of the shared
workload and read through a `MessageCountReducer(--window)`. Each turn has two steps (model
calls): the model calls the tool, then answers in `--answer-chars` characters, which streams
in chunks of `--chunk-size`. The same turns run with `Agent.run` and with `Agent.run_stream`
(every event consumed).

In the same run, every history call the agent makes is timed (a `SQLChatHistoryProvider`
whose `list_messages` and `add_messages` are timed), and so is every model call (a client
wrapper timing `complete`, and each chunk pulled from `stream`). Per step, the report gives
the wall time, the history time, the model time and the rest: memweave's orchestration
overhead (building requests, running the tool, events, tagging, bookkeeping), against the
target of < 2 ms per step beyond the history calls.

It prints a table, or with `--json` a JSON report holding the versions and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memweave.bench._cli import positive_int
from memweave.bench._env import machine, package_version
from memweave.bench._stats import Timings
from memweave.bench._workload import make_conversation
from memweave.llm import ChatChunk, ChatResponse, ToolSpec
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import Agent, tool
from memweave.providers.sql import SQLChatHistoryProvider
from memweave.reducers import ChatReducer, MessageCountReducer
from memweave.testing import ScriptedChatClient

__all__ = ["Options", "build_parser", "main", "run"]

TARGET_OVERHEAD_MS = 2.0
"""The issue's target: orchestration overhead per agent step, beyond the history calls."""

STEPS_PER_TURN = 2
"""Model calls per turn: one that calls the tool, one that answers."""

MODES = ("run", "run_stream")


@dataclass
class Options:
    """What to measure; see `--help`."""

    turns: int = 300
    warmup: int = 20
    history: int = 200
    window: int = 40
    answer_chars: int = 400
    chunk_size: int = 4
    seed: int = 0


class _Clock:
    """Seconds spent in history and model calls since the last `reset`."""

    def __init__(self) -> None:
        self.history = 0.0
        self.model = 0.0

    def reset(self) -> None:
        self.history = self.model = 0.0


class _TimedHistory(SQLChatHistoryProvider):
    """SQLite history whose public calls add their wall time to a clock."""

    def __init__(self, url: str, clock: _Clock) -> None:
        super().__init__(url)
        self.clock = clock

    async def list_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        reducer: ChatReducer | None = None,
    ) -> list[ChatMessage]:
        started = time.perf_counter()
        try:
            return await super().list_messages(
                session_id, limit=limit, before=before, reducer=reducer
            )
        finally:
            self.clock.history += time.perf_counter() - started

    async def add_messages(self, session_id: str, messages: Any) -> None:
        started = time.perf_counter()
        try:
            await super().add_messages(session_id, messages)
        finally:
            self.clock.history += time.perf_counter() - started


class _TimedClient:
    """A `StreamingChatClient` that adds the wall time of the scripted model to a clock."""

    def __init__(self, inner: ScriptedChatClient, clock: _Clock) -> None:
        self.inner = inner
        self.clock = clock

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> ChatResponse:
        started = time.perf_counter()
        try:
            return await self.inner.complete(messages, tools=tools, **options)
        finally:
            self.clock.model += time.perf_counter() - started

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatChunk]:
        chunks = self.inner.stream(messages, tools=tools, **options)
        while True:
            started = time.perf_counter()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            finally:
                self.clock.model += time.perf_counter() - started
            yield chunk


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"notes on {topic}"


def _scripted_model(options: Options) -> ScriptedChatClient:
    answer = ("The plan holds; " * (options.answer_chars // 16 + 1))[: options.answer_chars]
    counter = iter(range(10**9))

    def reply(messages: list[ChatMessage], tools: object, _: object) -> ChatMessage | str:
        if messages[-1].role == "tool":
            return answer
        arguments = json.dumps({"topic": messages[-1].text[:40]})
        return ChatMessage.assistant(
            tool_calls=[ToolCall(id=f"call-{next(counter)}", name="lookup", arguments=arguments)]
        )

    return ScriptedChatClient(reply, chunk_size=options.chunk_size)


async def _bench_mode(mode: str, options: Options, directory: Path) -> dict[str, Any]:
    clock = _Clock()
    history = _TimedHistory(f"sqlite+aiosqlite:///{directory / (mode + '.db')}", clock)
    agent = Agent(
        "bench",
        _TimedClient(_scripted_model(options), clock),
        instructions="Answer briefly.",
        tools=[lookup],
        history=history,
        reducer=MessageCountReducer(options.window),
    )
    session = f"orchestration-{mode}"
    prefill = make_conversation(options.history, seed=options.seed)
    await history.add_messages(session, prefill)
    questions = [m.text for m in prefill if m.role == "user"] or ["What is next?"]
    total, in_history, in_model, overhead = Timings(), Timings(), Timings(), Timings()
    events = 0
    for turn in range(options.warmup + options.turns):
        question = questions[turn % len(questions)]
        clock.reset()
        started = time.perf_counter()
        if mode == "run":
            await agent.run(question, session=session)
        else:
            async for _ in agent.run_stream(question, session=session):
                events += turn >= options.warmup
        elapsed = time.perf_counter() - started
        if turn < options.warmup:
            continue
        step_ms = 1000 / STEPS_PER_TURN
        total.samples.append(elapsed * step_ms)
        in_history.samples.append(clock.history * step_ms)
        in_model.samples.append(clock.model * step_ms)
        overhead.samples.append((elapsed - clock.history - clock.model) * step_ms)
    await history.aclose()
    summary = overhead.summary()
    return {
        "step_total": total.summary(),
        "step_history": in_history.summary(),
        "step_model": in_model.summary(),
        "step_overhead": summary,
        "events_per_turn": events / options.turns,
        "target_met": summary["p50_ms"] < TARGET_OVERHEAD_MS,
    }


async def run(options: Options) -> dict[str, Any]:
    """Measure both modes and return the JSON report."""
    with tempfile.TemporaryDirectory(prefix="memweave-bench-") as directory:
        results = {mode: await _bench_mode(mode, options, Path(directory)) for mode in MODES}
    return {
        "suite": "orchestration",
        "parameters": {
            "turns": options.turns,
            "warmup": options.warmup,
            "steps_per_turn": STEPS_PER_TURN,
            "history": options.history,
            "window": options.window,
            "answer_chars": options.answer_chars,
            "chunk_size": options.chunk_size,
            "seed": options.seed,
            "backend": "sqlite+aiosqlite (temporary file)",
        },
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "versions": {
            "memweave": package_version("memweave"),
            "pydantic": package_version("pydantic"),
            "sqlalchemy": package_version("sqlalchemy"),
            "aiosqlite": package_version("aiosqlite"),
        },
        "machine": machine(),
        "results": results,
    }


def _format_table(report: dict[str, Any]) -> str:
    params, machine = report["parameters"], report["machine"]
    header = ["mode", "total p50", "p95", "history p50", "model p50", "overhead p50", "p95", "ok"]
    rows = []
    for mode, result in report["results"].items():
        overhead = result["step_overhead"]
        rows.append(
            [
                mode,
                f"{result['step_total']['p50_ms']:.3f}",
                f"{result['step_total']['p95_ms']:.3f}",
                f"{result['step_history']['p50_ms']:.3f}",
                f"{result['step_model']['p50_ms']:.3f}",
                f"{overhead['p50_ms']:.3f}",
                f"{overhead['p95_ms']:.3f}",
                "yes" if result["target_met"] else "NO",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        f"agent steps (ms per model call), {params['turns']} turns x "
        f"{params['steps_per_turn']} steps, SQLite, window {params['window']} of "
        f"{params['history']}+ messages; target overhead < {report['target_overhead_ms']} ms",
        "  ".join(cell.rjust(width) for cell, width in zip(header, widths, strict=True)),
    ]
    lines.extend(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    lines.append(
        f"python {machine['python']} on {machine['machine']} ({machine['cpus']} cpus); "
        f"memweave {report['versions']['memweave']}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `python -m memweave.bench.orchestration`."""
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.orchestration",
        description="Time the agent loop per step, beyond history and model calls.",
    )
    parser.add_argument("--turns", type=positive_int, default=defaults.turns, help="timed turns")
    parser.add_argument(
        "--warmup", type=int, default=defaults.warmup, help="untimed turns run first"
    )
    parser.add_argument(
        "--history",
        type=positive_int,
        default=defaults.history,
        help="messages stored in the session before the first turn",
    )
    parser.add_argument(
        "--window", type=positive_int, default=defaults.window, help="messages the reducer keeps"
    )
    parser.add_argument(
        "--answer-chars",
        type=positive_int,
        default=defaults.answer_chars,
        help="length of the scripted answer",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=defaults.chunk_size,
        help="characters per streamed chunk",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="workload seed")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--output", metavar="PATH", help="also write the JSON report to PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    options = Options(
        turns=args.turns,
        warmup=max(0, args.warmup),
        history=args.history,
        window=args.window,
        answer_chars=args.answer_chars,
        chunk_size=args.chunk_size,
        seed=args.seed,
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
