"""Retrieval-quality benchmark: `VectorMemory` on LoCoMo conversations, in each retrieval mode.

Run as `python -m benchmarks.retrieval --locomo PATH [--json]` (`--help` for the options).
For each mode (`dense`, `lexical`, `hybrid`) it builds a fresh store and ingests every
conversation turn by turn through `VectorMemory.add`: the text is
`[<session date>] <speaker>: <text>`, plus `[shares a photo of <caption>]` when the turn has
one; the memory's user is the conversation, its session the LoCoMo session, its id the turn's
`dia_id`. The turns of one session are submitted together (one `add` call each, gathered), as
an application importing a transcript would; `--sequential` awaits each `add` in turn instead.

Then, for every question with evidence (the adversarial category 5 excluded), it searches the
conversation's memories with the question and measures recall@k, the share of the question's
evidence turns among the top k, for k = 5, 10, 25, overall and per category. LoCoMo's
categories are 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop. Evidence ids written
`"D8:6; D9:17"` or `"D30:05"` are normalised. It also reports ingest throughput (turns/s, from
the first `add` until every write is done) and query latency (p50/p95 of `search`, query
embedding included).

It prints a table, or with `--json` one JSON object:
`{"recall": {mode: {"5": {"overall": x, "<category>": y, ...}, "10": ..., "25": ...}},
"query_ms": {mode: {"p50": ..., "p95": ...}}, "ingest_turns_per_s": {mode: ...},
"questions": n, ...}` plus the versions and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from memweave.context import ChromaDefaultEmbeddings, EmbeddingFunction, VectorMemory
from memweave.context.vector import RetrievalMode

__all__ = ["Question", "Turn", "load_locomo", "main", "normalise_evidence", "run"]

MODES: tuple[RetrievalMode, ...] = ("dense", "lexical", "hybrid")
KS = (5, 10, 25)
CATEGORIES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop"}
"""LoCoMo's question categories (5, adversarial, has no evidence and is left out)."""

_EVIDENCE = re.compile(r"D(\d+)\s*:\s*(\d+)")
_SESSION = re.compile(r"session_(\d+)")
_DATE_FORMAT = "%I:%M %p on %d %B, %Y"


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


def load_locomo(path: str | os.PathLike[str]) -> list[Conversation]:
    """Read a LoCoMo JSON file (a list of samples with `conversation` and `qa`)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out: list[Conversation] = []
    for index, sample in enumerate(data):
        body = sample["conversation"]
        conversation = Conversation(id=str(sample.get("sample_id", f"conv-{index}")))
        numbers = sorted(
            int(match.group(1))
            for key in body
            if (match := _SESSION.fullmatch(key)) and isinstance(body[key], list)
        )
        for number in numbers:
            date_text = body.get(f"session_{number}_date_time")
            when = _parse_date(date_text)
            for turn in body[f"session_{number}"]:
                ids = normalise_evidence(str(turn.get("dia_id", "")))
                if not ids:
                    continue
                text = f"{turn['speaker']}: {turn['text']}"
                if date_text:
                    text = f"[{date_text}] {text}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo of {turn['blip_caption']}]"
                conversation.turns.append(Turn(ids[0], text, turn["speaker"], number, when))
        for qa in sample.get("qa", []):
            category = int(qa.get("category", 0))
            evidence = frozenset(
                e for item in qa.get("evidence", []) for e in normalise_evidence(item)
            )
            if category == 5 or not evidence:
                continue
            conversation.questions.append(Question(str(qa["question"]), evidence, category))
        out.append(conversation)
    return out


def _percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _ingest(
    memory: VectorMemory, conversations: Sequence[Conversation], *, sequential: bool
) -> float:
    """Store every turn; return turns per second."""
    total = sum(len(c.turns) for c in conversations)
    start = time.perf_counter()
    for conversation in conversations:
        sessions: dict[int, list[Turn]] = {}
        for turn in conversation.turns:
            sessions.setdefault(turn.session, []).append(turn)
        for number, turns in sessions.items():
            adds = (
                memory.add(
                    turn.text,
                    user_id=conversation.id,
                    session_id=f"session_{number}",
                    id=turn.id,
                    speaker=turn.speaker,
                    created_at=turn.created_at,
                )
                for turn in turns
            )
            if sequential:
                for add in adds:
                    await add
            else:
                await asyncio.gather(*adds)
    await memory.count(user_id=conversations[0].id)  # waits for every queued write
    return total / (time.perf_counter() - start)


async def _evaluate(
    memory: VectorMemory, conversations: Sequence[Conversation], mode: RetrievalMode
) -> tuple[dict[str, dict[str, float]], list[float]]:
    per_k: dict[int, dict[str, list[float]]] = {k: {} for k in KS}
    latencies: list[float] = []
    for conversation in conversations:
        for question in conversation.questions:
            start = time.perf_counter()
            hits = await memory.search(question.text, user_id=conversation.id, k=max(KS), mode=mode)
            latencies.append((time.perf_counter() - start) * 1000)
            ranked = [hit.id for hit in hits]
            for k in KS:
                found = len(question.evidence & set(ranked[:k])) / len(question.evidence)
                groups = per_k[k]
                groups.setdefault("overall", []).append(found)
                name = CATEGORIES.get(question.category, str(question.category))
                groups.setdefault(name, []).append(found)
    recall = {
        str(k): {name: statistics.fmean(values) for name, values in groups.items()}
        for k, groups in per_k.items()
    }
    return recall, latencies


async def run(
    locomo: str | os.PathLike[str],
    *,
    modes: Sequence[RetrievalMode] = MODES,
    sequential: bool = False,
    embedder: EmbeddingFunction | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return the report (see the module docstring)."""
    conversations = [c for c in load_locomo(locomo) if c.turns]
    embedder = embedder or ChromaDefaultEmbeddings()
    await embedder.embed(["warm up the model"])
    report: dict[str, Any] = {
        "recall": {},
        "query_ms": {},
        "ingest_turns_per_s": {},
        "questions": sum(len(c.questions) for c in conversations),
        "turns": sum(len(c.turns) for c in conversations),
        "conversations": len(conversations),
        "ingest": "sequential" if sequential else "concurrent per session",
        "embedder": embedder.name,
    }
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="memweave-bench-") as folder:
            async with VectorMemory(folder, embedder=embedder, mode=mode) as memory:
                rate = await _ingest(memory, conversations, sequential=sequential)
                recall, latencies = await _evaluate(memory, conversations, mode)
        report["recall"][mode] = recall
        report["query_ms"][mode] = {
            "p50": statistics.median(latencies),
            "p95": _percentile(latencies, 0.95),
        }
        report["ingest_turns_per_s"][mode] = rate
    report["versions"] = {
        name: _version(name)
        for name in ("memweave", "chromadb", "onnxruntime", "tokenizers", "numpy")
    }
    report["versions"]["python"] = platform.python_version()
    report["versions"]["sqlite"] = __import__("sqlite3").sqlite_version
    report["machine"] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }
    return report


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
        print(
            f"{mode:8} query p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms; "
            f"ingest {report['ingest_turns_per_s'][mode]:.0f} turns/s ({report['ingest']})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse options, run, print."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__)
    parser.add_argument("--locomo", required=True, help="a LoCoMo JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mode", action="append", choices=MODES, help="a mode to run (repeatable; default all)"
    )
    parser.add_argument(
        "--sequential", action="store_true", help="await each add in turn while ingesting"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(
        run(args.locomo, modes=tuple(args.mode or MODES), sequential=args.sequential)
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
