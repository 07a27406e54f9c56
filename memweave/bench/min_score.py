"""Which `min_score` fits the model: scores of relevant vs irrelevant memories on LoCoMo.

Run as `python -m memweave.bench.min_score --locomo PATH [--k 5] [--keep 0.99] [--json]`.
`VectorMemory.invoking` injects the top `k` hits of the newest user message that score at
least `min_score`; this measures where that cut belongs, in two kinds of store:

- shared: one store holding every conversation, ingested as `memweave.bench.retrieval` does
  (the memory's user is the conversation, its ids the turns' `dia_id`s). Like a store many
  users share, its BM25 statistics are rich, so the lexical signal is informative.
- session: a fresh store per LoCoMo session, holding only that session's turns, asked the
  questions answered in that session. Like a new user's memory (or a demo's), it holds a few
  dozen turns, BM25 tells them apart poorly, and a hybrid score rests on the dense
  similarity: this is where paraphrased questions used to fall under the cut.

In each store and retrieval mode it searches with every question that has evidence
(category 5 left out) and sorts the top `k` hits into

- relevant: the hit is one of the question's evidence turns;
- irrelevant: any other hit of the question's own conversation;
- unrelated: the hits of the question asked of another conversation's memories, which hold
  no answer to it: what an off-topic message would inject.

It reports percentiles of the score distributions per store and mode, and chooses, per mode,
the highest threshold (a multiple of 0.01) that keeps at least `--keep` (99%) of the relevant
hits in both kinds of store: recall first, since a relevant memory left out is the failure
users see (the agent forgets what it was told), while an irrelevant one costs tokens within
`k` and `max_memory_tokens` and reaches the model fenced as reference data. For that
threshold, and for a sweep of round ones, it gives the share of relevant hits kept, of
irrelevant hits cut, of unrelated questions that inject nothing, and how many memories an
unrelated question injects on average. The threshold of the default mode (hybrid) is the
default `min_score` of `VectorMemory`. Last, it scores the Agent Framework memory
reference's scenario (`"Hello, my name is Alice"`, later `"What's my name?"` and
paraphrases of it, beside unrelated questions) in a fresh store.

Scores depend on the fusion (`memweave.context.FusionWeights`, its per-query calibration
`dense_floor` and `dense_sure` included: the dense similarities of an unrelated question's and
of a question's best match, read from this report's dense mode); the report records the
weights and the SHA-256 of `memweave/context/_fusion.py` it measured, so a change there is
seen to need a new measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memweave import ChatMessage, Session
from memweave.bench._cli import positive_int
from memweave.bench._env import package_version
from memweave.bench._stats import percentile
from memweave.bench.retrieval import MODES, Conversation, Question, ingest, prepare
from memweave.context import ChromaDefaultEmbeddings, FusionWeights, VectorMemory, _fusion
from memweave.context.vector import RetrievalMode

__all__ = [
    "KEEP",
    "PERCENTILES",
    "PROBES",
    "REGIMES",
    "SWEEP",
    "Scores",
    "choose_threshold",
    "cut_at",
    "main",
    "run",
    "summarise",
]

KEEP = 0.99
"""The share of relevant hits the chosen threshold keeps, by default."""
REGIMES = ("shared", "session")
"""The kinds of store measured: `shared`, one store holding every conversation (as a store
many users share, whose BM25 statistics are rich); `session`, a fresh store per LoCoMo
session holding only that session's turns (as a new user's memory, few turns, where BM25
tells memories apart poorly)."""
PERCENTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
"""The percentiles reported of each score distribution."""
SWEEP = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)
"""Round thresholds reported beside the chosen one."""
PROBES: tuple[tuple[str, bool], ...] = (
    ("What's my name?", True),
    ("Do you know my name?", True),
    ("Can you remind me of my name?", True),
    ("Do you remember who I am?", True),
    ("What should I cook tonight?", False),
    ("What's the weather like today?", False),
    ("What's the weather in Paris?", False),
)
"""The reference scenario's questions (and unrelated ones), with whether the name is the answer."""
_SCENARIO = (
    ChatMessage.user("Hello, my name is Alice"),
    ChatMessage.assistant("Nice to meet you, Alice! How can I help you today?"),
)


def choose_threshold(relevant: Sequence[float], keep: float) -> float:
    """The highest threshold, a multiple of 0.01, that keeps at least `keep` of `relevant`."""
    ordered = sorted(relevant)
    allowed = len(ordered) - math.ceil(keep * len(ordered))  # how many may fall below
    cut = ordered[allowed] if allowed < len(ordered) else 1.0
    threshold = math.floor(cut * 100 + 1e-9) / 100
    # The tolerance rounds 0.29 * 100 = 28.999... up; it must not round 0.99999... up to 1.
    return threshold if threshold <= cut else math.floor(cut * 100) / 100


@dataclass
class Scores:
    """The scores one retrieval mode gave, sorted by what the hits were."""

    relevant: list[float] = field(default_factory=list)
    """Top-k hits that are evidence of their question."""
    irrelevant: list[float] = field(default_factory=list)
    """Other top-k hits of the question's own conversation."""
    unrelated: list[list[float]] = field(default_factory=list)
    """The top-k scores of each question asked of another conversation."""


def _share(scores: Sequence[float], threshold: float, *, above: bool) -> float | None:
    if not scores:
        return None
    hits = sum(1 for score in scores if (score >= threshold) == above)
    return hits / len(scores)


def cut_at(scores: Scores, threshold: float) -> dict[str, Any]:
    """What `min_score=threshold` does to `scores`: the share of relevant hits kept, of
    irrelevant hits cut, of unrelated questions injecting nothing, and the memories an
    unrelated question injects on average."""
    top1 = [max(top, default=0.0) for top in scores.unrelated]
    injected = [sum(1 for score in top if score >= threshold) for top in scores.unrelated]
    return {
        "min_score": threshold,
        "relevant_kept": _share(scores.relevant, threshold, above=True),
        "irrelevant_cut": _share(scores.irrelevant, threshold, above=False),
        "unrelated_silent": _share(top1, threshold, above=False),
        "unrelated_injected_mean": statistics.fmean(injected) if injected else None,
    }


def summarise(scores: Scores, keep: float) -> dict[str, Any]:
    """Percentiles of the score distributions, the threshold keeping `keep` of the relevant
    hits, and what each threshold of `SWEEP` keeps and cuts."""

    def spread(values: Sequence[float]) -> dict[str, Any]:
        out: dict[str, Any] = {"n": len(values)}
        for share in PERCENTILES:
            out[f"p{round(share * 100)}"] = percentile(values, share) if values else None
        return out

    return {
        "relevant": spread(scores.relevant),
        "irrelevant": spread(scores.irrelevant),
        "unrelated_top1": spread([max(top, default=0.0) for top in scores.unrelated]),
        "keeping_threshold": choose_threshold(scores.relevant, keep) if scores.relevant else None,
        "sweep": [cut_at(scores, value) for value in SWEEP],
    }


async def _ask(
    memory: VectorMemory,
    user_id: str,
    questions: Sequence[Question],
    unrelated: tuple[str, Sequence[Question]] | None,
    mode: RetrievalMode,
    k: int,
    scores: Scores,
) -> None:
    """Ask `questions` of `user_id`'s memories, and `unrelated` (a user with questions of
    another conversation) likewise; sort the hits into `scores`."""
    for question in questions:
        hits = await memory.search(question.text, user_id=user_id, k=k, mode=mode, min_score=0.0)
        for hit in hits:
            group = scores.relevant if hit.id in question.evidence else scores.irrelevant
            group.append(hit.score)
    if unrelated is not None:
        target, foreign = unrelated
        for question in foreign:
            hits = await memory.search(question.text, user_id=target, k=k, mode=mode, min_score=0.0)
            scores.unrelated.append([hit.score for hit in hits])


async def _shared_store(
    embedder: ChromaDefaultEmbeddings,
    conversations: Sequence[Conversation],
    modes: Sequence[RetrievalMode],
    k: int,
) -> dict[str, Scores]:
    """One store holding every conversation; each conversation's questions asked of it and
    of the next conversation."""
    out: dict[str, Scores] = {mode: Scores() for mode in modes}
    with tempfile.TemporaryDirectory(prefix="memweave-min-score-") as folder:
        async with VectorMemory(folder, embedder=embedder) as memory:
            for conversation in conversations:
                await ingest(memory, conversation)
            for mode in modes:
                for index, conversation in enumerate(conversations):
                    other = conversations[(index + 1) % len(conversations)]
                    asked = conversation.questions
                    unrelated = None if other is conversation else (other.id, asked)
                    await _ask(memory, conversation.id, asked, unrelated, mode, k, out[mode])
    return out


def _session_of(evidence: str) -> int:
    return int(evidence.split(":")[0].lstrip("D"))


async def _session_stores(
    embedder: ChromaDefaultEmbeddings,
    conversations: Sequence[Conversation],
    modes: Sequence[RetrievalMode],
    k: int,
) -> dict[str, Scores]:
    """A fresh store per LoCoMo session, holding only its turns; the questions answered in
    that session asked of it, and as many questions of the next conversation."""
    out: dict[str, Scores] = {mode: Scores() for mode in modes}
    for index, conversation in enumerate(conversations):
        other = conversations[(index + 1) % len(conversations)]
        foreign = itertools.cycle(other.questions) if other is not conversation else None
        for number in sorted({turn.session for turn in conversation.turns}):
            questions = [
                q
                for q in conversation.questions
                if {_session_of(e) for e in q.evidence} == {number}
            ]
            if not questions:
                continue
            turns = [turn for turn in conversation.turns if turn.session == number]
            unrelated = None
            if foreign is not None:
                unrelated = (conversation.id, [next(foreign) for _ in questions])
            async with VectorMemory(embedder=embedder) as memory:
                await ingest(memory, Conversation(conversation.id, turns, questions))
                for mode in modes:
                    await _ask(memory, conversation.id, questions, unrelated, mode, k, out[mode])
    return out


async def _probe(memory: VectorMemory, modes: Sequence[RetrievalMode]) -> list[dict[str, Any]]:
    """The reference scenario: the best score of each probe question, per mode."""
    session = Session(id="probe-session", user_id="probe-user")
    await memory.invoked(session, list(_SCENARIO[:1]), list(_SCENARIO[1:]))
    out: list[dict[str, Any]] = []
    for question, about_name in PROBES:
        row: dict[str, Any] = {"question": question, "about_name": about_name}
        for mode in modes:
            hits = await memory.search(
                question, user_id="probe-user", k=1, mode=mode, min_score=0.0
            )
            row[mode] = hits[0].score if hits else 0.0
        out.append(row)
    return out


def _fusion_identity() -> dict[str, Any]:
    source = Path(_fusion.__file__).read_bytes()
    return {
        "weights": FusionWeights().model_dump(),
        "fusion_py_sha256": hashlib.sha256(source).hexdigest(),
    }


async def run(
    locomo: str | os.PathLike[str],
    *,
    modes: Sequence[RetrievalMode] = MODES,
    k: int = 5,
    keep: float = KEEP,
) -> dict[str, Any]:
    """Measure and return the report (see the module docstring).

    Raises:
        LocomoFormatError, ValueError, OSError: As `memweave.bench.retrieval.prepare`.
    """
    plan = prepare(locomo, modes=modes, ks=(k,))
    embedder = ChromaDefaultEmbeddings()
    regimes = {
        "shared": await _shared_store(embedder, plan.conversations, plan.modes, k),
        "session": await _session_stores(embedder, plan.conversations, plan.modes, k),
    }
    async with VectorMemory(embedder=embedder) as fresh:
        probes = await _probe(fresh, plan.modes)
    per_mode: dict[str, Any] = {}
    for mode in plan.modes:
        summaries = {name: summarise(scores[mode], keep) for name, scores in regimes.items()}
        thresholds = [s["keeping_threshold"] for s in summaries.values()]
        chosen = min((t for t in thresholds if t is not None), default=0.0)
        per_mode[mode] = {
            "min_score": chosen,
            "at_min_score": {
                name: cut_at(scores[mode], chosen) for name, scores in regimes.items()
            },
            **summaries,
        }
    default_mode = "hybrid" if "hybrid" in per_mode else plan.modes[0]
    return {
        "k": k,
        "keep": keep,
        "modes": per_mode,
        "chosen": {"mode": default_mode, "min_score": per_mode[default_mode]["min_score"]},
        "probes": probes,
        "conversations": len(plan.conversations),
        "questions": sum(len(c.questions) for c in plan.conversations),
        "turns": sum(len(c.turns) for c in plan.conversations),
        "embedder": embedder.name,
        "fusion": _fusion_identity(),
        "versions": {
            "memweave": package_version("memweave"),
            "chromadb": package_version("chromadb"),
            "onnxruntime": package_version("onnxruntime"),
            "python": platform.python_version(),
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def _cell(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"min_score on LoCoMo: {report['conversations']} conversations, {report['turns']} "
        f"turns, {report['questions']} questions; top {report['k']} hits; {report['embedder']}"
    )
    names = [f"p{round(share * 100)}" for share in PERCENTILES]
    print(f"{'mode':8} {'store':8} {'scores':15} {'n':>6} " + " ".join(f"{n:>5}" for n in names))
    for mode, summary in report["modes"].items():
        for regime in REGIMES:
            for group in ("relevant", "irrelevant", "unrelated_top1"):
                spread = summary[regime][group]
                cells = " ".join(f"{_cell(spread[name]):>5}" for name in names)
                print(f"{mode:8} {regime:8} {group:15} {spread['n']:>6} {cells}")
    keep = report["keep"]
    print(f"min_score keeping {keep:.0%} of the relevant hits in both kinds of store:")
    columns = ("relevant kept", "irrelevant cut", "unrelated silent", "unrelated injected")
    print(f"{'mode':8} {'store':8} {'min_score':>9} " + " ".join(f"{c:>18}" for c in columns))
    keys = ("relevant_kept", "irrelevant_cut", "unrelated_silent", "unrelated_injected_mean")
    for mode, summary in report["modes"].items():
        rows = [(regime, summary["at_min_score"][regime], " <- chosen") for regime in REGIMES]
        if mode == report["chosen"]["mode"]:
            rows += [(r, row, "") for r in REGIMES for row in summary[r]["sweep"]]
        for regime, row, mark in rows:
            cells = " ".join(f"{_cell(row[key]):>18}" for key in keys)
            print(f"{mode:8} {regime:8} {row['min_score']:9.2f} {cells}{mark}")
    chosen = report["chosen"]
    print(f"chosen default: min_score={chosen['min_score']:.2f} ({chosen['mode']} mode)")
    print("reference scenario (a fresh store: 'Hello, my name is Alice' and the reply):")
    for row in report["probes"]:
        scores = ", ".join(f"{mode} {row[mode]:.2f}" for mode in report["modes"])
        print(f"  {row['question']!r:36} {scores}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse options, run, print."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.min_score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--locomo", required=True, help="a LoCoMo JSON file")
    parser.add_argument("--k", type=positive_int, default=5, help="hits per search (default 5)")
    parser.add_argument(
        "--keep",
        type=float,
        default=KEEP,
        help=f"share of relevant hits the threshold keeps (default {KEEP})",
    )
    parser.add_argument(
        "--mode", action="append", choices=MODES, help="a mode to run (repeatable; default all)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.keep <= 1:
        parser.error(f"--keep must be in (0, 1], got {args.keep}")
    modes = tuple(args.mode or MODES)
    try:
        prepare(args.locomo, modes=modes, ks=(args.k,))
    except (ValueError, OSError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    report = asyncio.run(run(args.locomo, modes=modes, k=args.k, keep=args.keep))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
