"""Retrieval-quality benchmark: `VectorMemory` on LoCoMo conversations, in each retrieval mode.

Run as `python -m memweave.bench.retrieval --locomo PATH [--json]` (`--help` for the options).
It builds one store and ingests every conversation into it once, turn by turn through
`VectorMemory.add`, as `VectorMemory.invoked` stores a message: the text is what was said, plus
`[shares a photo of <caption>]` when the turn has one, with the speaker (`speaker=`) and the
session's date (`created_at=`) beside it (`--prefixed-text` also writes them into the text,
`[<session date>] <speaker>: <text>`, the layout of figures before issue 17); the memory's
user is the conversation, its session the LoCoMo session, its id the turn's `dia_id`. The turns
of one conversation are submitted together (one `add` call each, gathered), as an application
importing a transcript would, and `VectorMemory` writes them in batches; `--sequential`
awaits each `add` in turn instead. The retrieval mode is a setting of `search` only, so every
mode is then measured on that same store.

For every question with evidence (the adversarial category 5 excluded), it searches the
conversation's memories with the question and measures recall@k, the share of the question's
evidence turns among the top k, for k = 5, 10, 25 (or any `--k`), overall and per category.
LoCoMo's categories are 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop. Evidence ids
written `"D8:6; D9:17"` or `"D30:05"` are normalised. It also reports ingest throughput
(turns/s, from the first `add` until every write is done; one ingest serves every mode, so
each mode reports the same figure) beside the embedder's own rate on the same texts in the
same run (all of them in one `embed` call, the mean of one run before and one after the
ingest). The ingest is timed `--rounds` times (default 3; all but the last into a store thrown
away), each round between two runs of the embedder alone, and the ingest figures are medians
over the rounds (`ingest_rounds` lists each). It also reports query latency (p50/p95 of
`search`, query embedding included). `--quantized` uses the int8 model
(`ChromaDefaultEmbeddings(quantized=True)`).

It prints a table, or with `--json` one JSON object:
`{"recall": {mode: {"5": {"overall": x, "<category>": y, ...}, "10": ..., "25": ...}},
"query_ms": {mode: {"p50": ..., "p95": ...}}, "ingest_turns_per_s": {mode: ...},
"embedder_turns_per_s": x, "ingest_vs_embedder": r, "questions": n, ...}` plus the versions
and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

from memweave.bench._cli import add_rounds, positive_int
from memweave.bench._env import package_version
from memweave.bench._stats import percentile
from memweave.context import (
    ChromaDefaultEmbeddings,
    EmbeddingFunction,
    FusionWeights,
    VectorMemory,
)
from memweave.context.vector import RetrievalMode

__all__ = [
    "KS",
    "MODES",
    "SEARCH_LIMIT",
    "Conversation",
    "LocomoFormatError",
    "Plan",
    "Question",
    "Turn",
    "embed_rate",
    "ingest",
    "load_locomo",
    "main",
    "normalise_evidence",
    "prepare",
    "run",
]

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")
KS = (5, 10, 25)
"""The recall@k cut-offs measured by default."""
SEARCH_LIMIT = 1000
"""The most hits one `VectorMemory.search` returns, hence the deepest recall@k measurable on a
conversation with more turns than that."""
CATEGORIES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop"}
"""LoCoMo's question categories (5, adversarial, has no evidence and is left out)."""

_EVIDENCE = re.compile(r"D(\d+)\s*:\s*(\d+)")
_SESSION = re.compile(r"session_(\d+)")
_DATE_FORMAT = "%I:%M %p on %d %B, %Y"

Progress = Callable[[int, int, str], None]
"""Called with (steps done, steps in all, the step starting now), and once more at the end."""


class LocomoFormatError(ValueError):
    """A data file is not in the public `locomo10.json` layout; the message says where.

    Attributes:
        path: The file.
        where: The part that is wrong, e.g. `sample 0 ('conv-26'), session_1, turn 3`.
        reason: What is wrong with it, e.g. `no 'text'`.
    """

    def __init__(self, path: str | os.PathLike[str], where: str, reason: str) -> None:
        self.path = str(path)
        self.where = where
        self.reason = reason
        super().__init__(f"{self.path!r} is not in the locomo10.json layout: {where}: {reason}")


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation, ready to store."""

    id: str
    text: str
    speaker: str
    session: int
    created_at: datetime | None


@dataclass(frozen=True)
class Question:
    """One question with the ids of its evidence turns."""

    text: str
    evidence: frozenset[str]
    category: int


@dataclass
class Conversation:
    """A LoCoMo conversation: its turns in order, and its questions."""

    id: str
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """A checked run: the conversations that have turns, the modes and the cut-offs."""

    conversations: list[Conversation]
    modes: tuple[RetrievalMode, ...]
    ks: tuple[int, ...]


def normalise_evidence(value: str) -> list[str]:
    """Turn ids in an evidence string: `"D8:6; D9:17"` -> `["D8:6", "D9:17"]`, `"D30:05"` ->
    `["D30:5"]`."""
    return [f"D{int(a)}:{int(b)}" for a, b in _EVIDENCE.findall(value)]


def _parse_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


class _Reader:
    """Reads the parts of one file, raising `LocomoFormatError` that names a bad one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def field(self, item: dict[str, Any], key: str, kind: type, where: str) -> Any:
        if key not in item:
            raise LocomoFormatError(self.path, where, f"no {key!r}")
        value = item[key]
        if not isinstance(value, kind):
            raise LocomoFormatError(
                self.path, where, f"{key!r} is {type(value).__name__}, expected {kind.__name__}"
            )
        return value

    def number(self, item: dict[str, Any], key: str, where: str) -> int:
        if key not in item:
            raise LocomoFormatError(self.path, where, f"no {key!r}")
        value = item[key]
        # An int, or an int written as a string; bool is an int to Python, not to LoCoMo.
        if not isinstance(value, bool):
            try:
                return int(value)
            except (TypeError, ValueError):
                pass
        raise LocomoFormatError(self.path, where, f"{key!r} is {value!r}, expected a number")

    def each(self, items: object, what: str, where: str) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise LocomoFormatError(
                self.path, where, f"expected a list of {what}s, got {type(items).__name__}"
            )
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise LocomoFormatError(
                    self.path,
                    f"{where}, {what} {index}",
                    f"expected an object, got {type(item).__name__}",
                )
        return items

    def texts(self, items: object, where: str) -> list[str]:
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise LocomoFormatError(self.path, where, "expected a list of strings")
        return items


def load_locomo(path: str | os.PathLike[str], *, prefixed: bool = False) -> list[Conversation]:
    """Read a LoCoMo JSON file: a list of samples with `conversation` (speakers, `session_<n>`
    lists of turns with `speaker`, `dia_id` and `text`, `session_<n>_date_time`) and `qa`
    (questions with `question`, `category` and `evidence`).

    A turn's text is what was said, plus `[shares a photo of <caption>]` when it has one; its
    speaker and session date are kept beside it (`Turn.speaker`, `Turn.created_at`), as
    `VectorMemory.invoked` keeps a message's name and time. With `prefixed`, the text starts
    with them too: `[<session date>] <speaker>: <text>` (the layout of earlier figures).

    Raises:
        LocomoFormatError: The file is not JSON in that layout; names the first missing or
            malformed field and where it is.
        OSError: The file cannot be read.
    """
    try:
        data = json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LocomoFormatError(path, "the file", f"not valid JSON ({exc})") from None
    read = _Reader(path)
    out: list[Conversation] = []
    for index, sample in enumerate(read.each(data, "sample", "the file")):
        conversation = Conversation(id=str(sample.get("sample_id", f"conv-{index}")))
        where = f"sample {index} ({conversation.id!r})"
        body: dict[str, Any] = read.field(sample, "conversation", dict, where)
        numbers = sorted(int(match.group(1)) for key in body if (match := _SESSION.fullmatch(key)))
        for number in numbers:
            session = f"session_{number}"
            date_text = body.get(f"{session}_date_time")
            when = _parse_date(date_text)
            for position, turn in enumerate(
                read.each(body[session], "turn", f"{where}, {session}")
            ):
                at = f"{where}, {session}, turn {position}"
                speaker: str = read.field(turn, "speaker", str, at)
                said: str = read.field(turn, "text", str, at)
                ids = normalise_evidence(read.field(turn, "dia_id", str, at))
                if not ids:
                    continue
                text = said
                if prefixed:
                    text = f"{speaker}: {said}"
                    if date_text:
                        text = f"[{date_text}] {text}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo of {turn['blip_caption']}]"
                conversation.turns.append(Turn(ids[0], text, speaker, number, when))
        for position, qa in enumerate(read.each(sample.get("qa", []), "question", f"{where}, qa")):
            at = f"{where}, qa {position}"
            question: str = read.field(qa, "question", str, at)
            category = read.number(qa, "category", at)
            evidence = frozenset(
                e
                for item in read.texts(qa.get("evidence", []), f"{at}, evidence")
                for e in normalise_evidence(item)
            )
            if category == 5 or not evidence:
                continue
            conversation.questions.append(Question(question, evidence, category))
        out.append(conversation)
    return out


def _check_ks(ks: Iterable[int], conversations: Sequence[Conversation]) -> tuple[int, ...]:
    try:
        checked = tuple(sorted(set(ks)))
    except TypeError:
        raise ValueError(f"ks must be positive ints, got {ks!r}") from None
    if not checked or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in checked):
        raise ValueError(f"ks must be positive ints, got {ks!r}")
    for conversation in conversations:
        # A cut-off at or past the conversation's length is recall over all of it.
        if min(checked[-1], len(conversation.turns)) > SEARCH_LIMIT:
            raise ValueError(
                f"recall@{checked[-1]} needs the top {checked[-1]} memories of conversation "
                f"{conversation.id!r} ({len(conversation.turns):,} turns), more than one "
                f"search returns ({SEARCH_LIMIT}); use k <= {SEARCH_LIMIT}"
            )
    return checked


def prepare(
    locomo: str | os.PathLike[str],
    *,
    modes: Iterable[str] = MODES,
    ks: Iterable[int] = KS,
    prefixed: bool = False,
) -> Plan:
    """Read and check everything a run needs before it stores anything.

    Args:
        locomo: The LoCoMo file.
        modes: Retrieval modes, from `MODES`; duplicates are dropped, order kept.
        ks: Recall cut-offs, any positive ints; measured in increasing order.
        prefixed: Write the date and speaker into each turn's text (see `load_locomo`).

    Raises:
        LocomoFormatError: The file is not in the `locomo10.json` layout, or has no turn or
            no question to measure.
        ValueError: An unknown mode, no mode, or a cut-off that is not a positive int (or
            deeper than `SEARCH_LIMIT` on a conversation longer than that).
        OSError: The file cannot be read.
    """
    conversations = [c for c in load_locomo(locomo, prefixed=prefixed) if c.turns]
    if not conversations:
        raise LocomoFormatError(locomo, "the file", "no conversation has a turn")
    if not any(c.questions for c in conversations):
        raise LocomoFormatError(
            locomo, "the file", "no question of categories 1-4 has evidence, so none is measured"
        )
    given = list(modes)
    chosen = tuple(dict.fromkeys(given))
    if not chosen or any(mode not in MODES for mode in chosen):
        raise ValueError(f"modes must be among {', '.join(MODES)}, got {given!r}")
    checked_modes = cast("tuple[RetrievalMode, ...]", chosen)
    return Plan(conversations, checked_modes, _check_ks(ks, conversations))


async def ingest(
    memory: VectorMemory, conversation: Conversation, *, sequential: bool = False
) -> float:
    """Store every turn of `conversation`, all submitted at once (one `add` call each,
    gathered, so they are written in batches) or one after the other with `sequential`;
    return the seconds it took, until every write is done."""
    start = time.perf_counter()
    adds = (
        memory.add(
            turn.text,
            user_id=conversation.id,
            session_id=f"session_{turn.session}",
            id=turn.id,
            speaker=turn.speaker,
            created_at=turn.created_at,
        )
        for turn in conversation.turns
    )
    if sequential:
        for add in adds:
            await add
    else:
        await asyncio.gather(*adds)
    await memory.count_memories(user_id=conversation.id)  # waits for every queued write
    return time.perf_counter() - start


async def embed_rate(embedder: EmbeddingFunction, texts: Sequence[str]) -> tuple[float, float]:
    """Texts per second the embedder alone reaches on `texts`, in one `embed` call: per
    wall-clock second, and per second of this process's CPU time (which other processes on
    the machine do not change)."""
    start, cpu = time.perf_counter(), time.process_time()
    await embedder.embed(list(texts))
    return len(texts) / (time.perf_counter() - start), len(texts) / (time.process_time() - cpu)


class _IngestRound(NamedTuple):
    """One timed ingest: its rate and the embedder's beside it, per wall and CPU second."""

    ingest: float
    embedder: float
    ingest_cpu: float
    embedder_cpu: float


async def _evaluate(
    memory: VectorMemory,
    conversation: Conversation,
    mode: RetrievalMode,
    ks: Sequence[int],
    found: dict[int, dict[str, list[float]]],
    latencies: list[float],
) -> None:
    """Search for each question of `conversation`; add its recall per k to `found`."""
    depth = min(ks[-1], len(conversation.turns))
    for question in conversation.questions:
        start = time.perf_counter()
        hits = await memory.search(
            question.text, user_id=conversation.id, k=depth, mode=mode, min_score=0.0
        )
        latencies.append((time.perf_counter() - start) * 1000)
        ranked = [hit.id for hit in hits]
        name = CATEGORIES.get(question.category, str(question.category))
        for k in ks:
            share = len(question.evidence & set(ranked[:k])) / len(question.evidence)
            groups = found.setdefault(k, {})
            groups.setdefault("overall", []).append(share)
            groups.setdefault(name, []).append(share)


async def run(
    locomo: str | os.PathLike[str],
    *,
    modes: Sequence[RetrievalMode] = MODES,
    ks: Iterable[int] = KS,
    sequential: bool = False,
    embedder: EmbeddingFunction | None = None,
    fusion: FusionWeights | None = None,
    prefixed: bool = False,
    rounds: int = 3,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return the report (see the module docstring).

    Every conversation is ingested once, into one store, and each mode is measured on it;
    the ingest rate is the median of `rounds` ingests (all but the last into stores of their
    own, thrown away), each between two runs of the embedder alone.

    Args:
        locomo: A file in the public `locomo10.json` layout.
        modes: The retrieval modes to measure.
        ks: The recall@k cut-offs, any positive ints.
        sequential: Await each `add` in turn instead of gathering a session's.
        embedder: The embedding function (default: Chroma's all-MiniLM-L6-v2).
        fusion: The memory's fusion weights (default: `FusionWeights()`).
        prefixed: Write the date and speaker into each turn's text (see `load_locomo`).
        rounds: Ingests timed; the ingest figures are their medians.
        progress: Told of each step: the ingest of a conversation, then its questions
            in each mode.

    Raises:
        LocomoFormatError, ValueError, OSError: As `prepare` (or `rounds` is not a positive
            int), before anything is stored.
    """
    plan = prepare(locomo, modes=modes, ks=ks, prefixed=prefixed)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    conversations = plan.conversations
    embedder = embedder or ChromaDefaultEmbeddings()
    await embedder.embed(["warm up the model"])
    texts = [turn.text for c in conversations for turn in c.turns]
    turns = len(texts)
    steps = len(conversations) * (rounds + len(plan.modes))
    done = 0

    def step(what: str) -> None:
        if progress is not None:
            progress(done, steps, what)

    async def ingest_all(memory: VectorMemory, label: str) -> tuple[float, float]:
        nonlocal done
        seconds, cpu = 0.0, time.process_time()
        for conversation in conversations:
            step(f"ingest {conversation.id} ({len(conversation.turns):,} turns){label}")
            seconds += await ingest(memory, conversation, sequential=sequential)
            done += 1
        return seconds, time.process_time() - cpu

    # The embedder alone on the same texts, in one call (its best case), before and after
    # each ingest: a round's ingest rate is read against the mean of the two beside it.
    alone = [await embed_rate(embedder, texts)]
    timed: list[tuple[float, float]] = []  # per round: ingest seconds, CPU seconds
    found: dict[str, dict[int, dict[str, list[float]]]] = {mode: {} for mode in plan.modes}
    latencies: dict[str, list[float]] = {mode: [] for mode in plan.modes}
    for extra in range(rounds - 1):  # timing rounds, each into a store of its own
        with tempfile.TemporaryDirectory(prefix="memweave-bench-") as folder:
            async with VectorMemory(folder, embedder=embedder, fusion=fusion) as memory:
                await memory.count_memories(user_id="memweave-bench-open")
                timed.append(await ingest_all(memory, f", timing round {extra + 1}"))
        alone.append(await embed_rate(embedder, texts))
    with tempfile.TemporaryDirectory(prefix="memweave-bench-") as folder:
        async with VectorMemory(folder, embedder=embedder, fusion=fusion) as memory:
            # Opening the store (starting Chroma, creating the catalogue) happens once per
            # process, not per turn: timed apart, so the ingest rate is the steady one.
            started = time.perf_counter()
            await memory.count_memories(user_id="memweave-bench-open")
            open_s = time.perf_counter() - started
            timed.append(await ingest_all(memory, ""))
            alone.append(await embed_rate(embedder, texts))
            for mode in plan.modes:
                for conversation in conversations:
                    step(f"{mode}: {conversation.id} ({len(conversation.questions):,} questions)")
                    await _evaluate(
                        memory, conversation, mode, plan.ks, found[mode], latencies[mode]
                    )
                    done += 1
    step("done")
    measured = [
        _IngestRound(
            turns / seconds,
            statistics.fmean(wall for wall, _ in alone[n : n + 2]),
            turns / cpu,
            statistics.fmean(cpu_rate for _, cpu_rate in alone[n : n + 2]),
        )
        for n, (seconds, cpu) in enumerate(timed)
    ]
    rate = statistics.median(r.ingest for r in measured)
    how = "sequential" if sequential else "concurrent (a conversation's adds gathered)"
    report: dict[str, Any] = {
        "recall": {
            mode: {
                str(k): {name: statistics.fmean(values) for name, values in groups.items()}
                for k, groups in sorted(by_k.items())
            }
            for mode, by_k in found.items()
        },
        "query_ms": {
            mode: {"p50": statistics.median(samples), "p95": percentile(samples, 0.95)}
            for mode, samples in latencies.items()
        },
        # One ingest serves every mode; the per-mode keys stay for readers of older results.
        # Ingest figures are medians over the rounds; each round's ratio is its ingest rate
        # over the embedder's rate measured just before and after it.
        "ingest_turns_per_s": {mode: rate for mode in plan.modes},
        "embedder_turns_per_s": statistics.median(wall for wall, _ in alone),
        "embedder_runs_turns_per_s": [wall for wall, _ in alone],
        "ingest_vs_embedder": statistics.median(r.ingest / r.embedder for r in measured),
        # Per second of this process's CPU time: unmoved by other work on a shared machine.
        "ingest_turns_per_cpu_s": statistics.median(r.ingest_cpu for r in measured),
        "embedder_turns_per_cpu_s": statistics.median(cpu for _, cpu in alone),
        "ingest_vs_embedder_cpu": statistics.median(
            r.ingest_cpu / r.embedder_cpu for r in measured
        ),
        "ingest_rounds": [r._asdict() for r in measured],
        "questions": sum(len(c.questions) for c in conversations),
        "turns": turns,
        "conversations": len(conversations),
        "ks": list(plan.ks),
        "ingest": f"{how}, once for every mode ({rounds} timing rounds)",
        "store_open_s": open_s,
        "embedder": embedder.name,
        "fusion": (fusion or FusionWeights()).model_dump(),
        "text": "prefixed" if prefixed else "plain",
    }
    report["versions"] = {
        name: package_version(name)
        for name in ("memweave", "chromadb", "onnxruntime", "tokenizers", "numpy")
    }
    report["versions"]["python"] = platform.python_version()
    report["versions"]["sqlite"] = sqlite3.sqlite_version
    report["machine"] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }
    return report


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"LoCoMo retrieval: {report['conversations']} conversations, {report['turns']} turns, "
        f"{report['questions']} questions; embedder {report['embedder']}"
    )
    names = ["overall", *CATEGORIES.values()]
    print(f"{'mode':8} {'k':>3} " + " ".join(f"{name:>11}" for name in names))
    for mode, by_k in report["recall"].items():
        for k, groups in by_k.items():
            cells = " ".join(f"{groups.get(name, float('nan')):11.3f}" for name in names)
            print(f"{mode:8} {k:>3} {cells}")
    for mode in report["recall"]:
        latency = report["query_ms"][mode]
        print(f"{mode:8} query p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms")
    rate = next(iter(report["ingest_turns_per_s"].values()))
    print(
        f"ingest {rate:.0f} turns/s ({report['ingest']}); embedder alone "
        f"{report['embedder_turns_per_s']:.0f} turns/s; ingest/embedder "
        f"{report['ingest_vs_embedder']:.0%} (per CPU second: "
        f"{report['ingest_turns_per_cpu_s']:.0f} vs {report['embedder_turns_per_cpu_s']:.0f}, "
        f"{report['ingest_vs_embedder_cpu']:.0%})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse options, run, print."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.retrieval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--locomo", required=True, help="a LoCoMo JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mode", action="append", choices=MODES, help="a mode to run (repeatable; default all)"
    )
    parser.add_argument(
        "--k",
        type=positive_int,
        nargs="+",
        metavar="K",
        help="recall@k cut-offs (default: 5 10 25)",
    )
    parser.add_argument(
        "--sequential", action="store_true", help="await each add in turn while ingesting"
    )
    parser.add_argument(
        "--prefixed-text",
        action="store_true",
        help="store '[<date>] <speaker>: <text>' as each turn's text (the pre-issue-17 layout)",
    )
    parser.add_argument(
        "--quantized",
        action="store_true",
        help="embed with the int8 model (ChromaDefaultEmbeddings(quantized=True))",
    )
    add_rounds(parser)
    args = parser.parse_args(argv)
    modes = tuple(args.mode or MODES)
    ks = tuple(args.k or KS)
    try:
        prepare(args.locomo, modes=modes, ks=ks)
    except (ValueError, OSError) as exc:
        message = str(exc)
        if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
            message = f"{exc.strerror}: {str(exc.filename)!r}"
        parser.exit(1, f"{parser.prog}: error: {message}\n")
    embedder = ChromaDefaultEmbeddings(quantized=args.quantized)
    report = asyncio.run(
        run(
            args.locomo,
            modes=modes,
            ks=ks,
            sequential=args.sequential,
            embedder=embedder,
            prefixed=args.prefixed_text,
            rounds=args.rounds,
        )
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
