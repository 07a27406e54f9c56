"""Fusion sweep and signal ablation of `VectorMemory`, cross-validated across LoCoMo
conversations.

Run as `python -m memweave.bench.retrieval_ablation --locomo PATH [--json]` (`--help` for the
options). It ingests every conversation once (as `memweave.bench.retrieval` does), computes each
question's retrieval signals once (`memweave.bench._ablation_signals`: embeddings and BM25 are
cached, so a setting costs a re-fusion, not a search), and checks that the cached ranking is
the one `VectorMemory.search` returns.

Protocol (leave one conversation out; on the two development conversations: tune on one,
report on the other, both ways). For each held-out conversation, every hybrid setting of the
grids (`GRIDS`: the fusion method, weighted mean or reciprocal-rank fusion, and every weight)
is scored by recall@`--target-k` on the other conversations; each score is averaged over the
setting's box on its grid (every setting one step away or less along each axis), which
favours broad plateaus over sharp peaks; the best box wins (ties go to the setting nearest the
pre-protocol weights, so a weight changes only when the data says so); and the winner's
recall on the held-out conversation is what is reported. Questions of all held-out
conversations are pooled, so each counts once. The defaults of `FusionWeights` are the
setting the same rule picks with every conversation as tuning data; its in-sample figure is
printed, never reported as the estimate.

Ablation: the protocol is rerun with one signal turned off (its weight fixed at 0, the rest
still tuned): dense, lexical, speaker, the neighbour window of the dense signal, the
neighbours' text (BM25 context column), the date column; with one fusion method only; and for
the `dense` and `lexical` search modes alone (their own settings tuned the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memweave.bench import _ablation_signals as cache
from memweave.bench import retrieval
from memweave.bench._cli import positive_int
from memweave.context import ChromaDefaultEmbeddings, EmbeddingFunction, VectorMemory
from memweave.context._fusion import FusionWeights
from memweave.context._records import read_scope

__all__ = ["GRIDS", "Grid", "Setting", "main", "run"]

Floats = np.ndarray[Any, np.dtype[np.float64]]

_PRIOR = FusionWeights(
    method="weighted", dense=1.0, lexical=1.25, speaker=0.15, window=0.5, context=0.3, date=1.0
)
"""The weights before this protocol (tuned in sample on the development pair): ties between
settings go to the one nearest these."""

DEPTH = 25
"""Every setting ranks this deep; recall@5, @10 and @25 are read from one ranking."""
KS = (5, 10, 25)


@dataclass(frozen=True)
class Setting:
    """One point of a grid: a search mode and fusion weights, with its grid coordinates."""

    grid: str
    mode: str
    weights: FusionWeights
    coordinates: tuple[int, ...]


@dataclass(frozen=True)
class Grid:
    """A grid of settings: fixed fields, and the values swept along each axis."""

    name: str
    mode: str
    fixed: dict[str, Any]
    axes: dict[str, tuple[float, ...]]

    def settings(self) -> list[Setting]:
        """Every point of the grid, in axis order."""
        names = list(self.axes)
        out: list[Setting] = []
        for coordinates in itertools.product(*(range(len(self.axes[n])) for n in names)):
            values = {name: self.axes[name][i] for name, i in zip(names, coordinates, strict=True)}
            weights = FusionWeights(**{**self.fixed, **values})
            out.append(Setting(self.name, self.mode, weights, tuple(coordinates)))
        return out


_WINDOW = (0.0, 0.25, 0.5, 0.75, 1.0)
_CONTEXT = (0.0, 0.15, 0.3, 0.5, 1.0, 1.5, 2.0)
_DATE = (0.0, 0.5, 1.0, 2.0)
_SPEAKER = (0.0, 0.1, 0.25, 0.5)
_RRF_K = (5.0, 10.0, 20.0, 40.0, 60.0)
GRIDS = (
    Grid(
        "rrf",
        "hybrid",
        {"method": "rrf", "dense": 1.0},
        {
            "lexical": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
            "speaker": _SPEAKER,
            "window": _WINDOW,
            "context": _CONTEXT,
            "date": _DATE,
            "rrf_k": _RRF_K,
        },
    ),
    Grid(
        "rrf, no dense",
        "hybrid",
        {"method": "rrf", "dense": 0.0, "lexical": 1.0, "window": 0.0},
        {"speaker": _SPEAKER, "context": _CONTEXT, "date": _DATE, "rrf_k": _RRF_K},
    ),
    Grid(
        "weighted",
        "hybrid",
        {"method": "weighted", "dense": 1.0},
        {
            "lexical": (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0),
            "speaker": (0.0, 0.05, 0.1, 0.15, 0.25, 0.4),
            "window": _WINDOW,
            "context": _CONTEXT,
            "date": _DATE,
        },
    ),
    Grid(
        "weighted, no dense",
        "hybrid",
        {"method": "weighted", "dense": 0.0, "lexical": 1.0, "window": 0.0},
        {"speaker": (0.0, 0.05, 0.1, 0.15, 0.25, 0.4), "context": _CONTEXT, "date": _DATE},
    ),
    Grid("dense only", "dense", {}, {"window": _WINDOW}),
    Grid("lexical only", "lexical", {}, {"context": _CONTEXT, "date": _DATE}),
)
"""The settings swept. Fusion is scale-free, so the dense weight stays 1 (0 in the grids
without it) and the other weights are relative to it."""

Keep = Callable[[Setting], bool]
_RRF = ("rrf", "rrf, no dense")
_WEIGHTED = ("weighted", "weighted, no dense")


def _hybrid(test: Callable[[FusionWeights], bool]) -> Keep:
    return lambda s: s.grid in (*_RRF, *_WEIGHTED) and test(s.weights)


ABLATIONS: tuple[tuple[str, Keep], ...] = (
    ("all signals (the protocol)", _hybrid(lambda w: True)),
    ("- dense", _hybrid(lambda w: w.dense == 0)),
    ("- lexical", _hybrid(lambda w: w.lexical == 0)),
    ("- speaker", _hybrid(lambda w: w.speaker == 0)),
    ("- window (dense neighbours)", _hybrid(lambda w: w.window == 0)),
    ("- context (BM25 neighbours' text)", _hybrid(lambda w: w.context == 0)),
    ("- date (BM25 date column)", _hybrid(lambda w: w.date == 0)),
    ("weighted mean only", lambda s: s.grid in _WEIGHTED),
    ("rrf only", lambda s: s.grid in _RRF),
    ("dense only (mode)", lambda s: s.grid == "dense only"),
    ("lexical only (mode)", lambda s: s.grid == "lexical only"),
)
"""Each row of the ablation: which settings the protocol may choose from. The first is the
protocol itself (hybrid search, the fusion method and every weight tuned); the `-` rows fix
one signal at 0 and tune the rest; then one fusion method only; then the single-index
modes."""


@dataclass
class _Question:
    conversation: str
    category: str
    evidence: frozenset[str]


def _recalls(ranked_ids: Sequence[str], evidence: frozenset[str]) -> list[float]:
    return [len(evidence & set(ranked_ids[:k])) / len(evidence) for k in KS]


async def _gather(
    locomo: str, embedder: EmbeddingFunction, say: Callable[[str], None], *, prefixed: bool
) -> tuple[list[_Question], list[list[cache.Signals]], list[cache.ConversationIndex], Any]:
    """Ingest, embed the questions, and cache every question's signals."""
    plan = retrieval.prepare(locomo, ks=(DEPTH,), prefixed=prefixed)
    pairs = sorted({(c, d) for c in _CONTEXT for d in _DATE})
    questions: list[_Question] = []
    signals: list[list[cache.Signals]] = []
    conversations: list[cache.ConversationIndex] = []
    agreement: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="memweave-ablation-") as folder:
        async with VectorMemory(folder, embedder=embedder) as memory:
            for conversation in plan.conversations:
                say(f"ingest {conversation.id} ({len(conversation.turns)} turns)")
                await retrieval.ingest(memory, conversation)
            index = await memory._open("search")
            for conversation in plan.conversations:
                texts = [q.text for q in conversation.questions]
                if not texts:
                    continue
                say(f"signals of {conversation.id} ({len(texts)} questions)")
                vectors = await embedder.embed(texts)
                scope, _ = read_scope(conversation.id, None, operation="search")
                table = await memory._run(cache.build_conversation, index, scope)
                found = await memory._run(
                    lambda c=table, t=texts, v=vectors: cache.build_signals(
                        index, c, t, v, k=DEPTH, bm25=pairs
                    )
                )
                checked = await memory._run(
                    lambda c=table, t=texts, v=vectors, f=found: cache.check_agreement(
                        index, c, t, v, f, FusionWeights(), DEPTH
                    )
                )
                for mode, share in checked.items():
                    agreement.setdefault(mode, []).append(share * len(texts))
                conversations.append(table)
                signals.append(found)
                questions += [
                    _Question(
                        conversation.id,
                        retrieval.CATEGORIES.get(q.category, str(q.category)),
                        q.evidence,
                    )
                    for q in conversation.questions
                ]
    total = len(questions)
    return questions, signals, conversations, {m: sum(v) / total for m, v in agreement.items()}


def _score_all(
    settings: Sequence[Setting],
    signals: Sequence[Sequence[cache.Signals]],
    conversations: Sequence[cache.ConversationIndex],
    questions: Sequence[_Question],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Recall@KS of every setting on every question: shape (settings, questions, len(KS)).

    Settings sharing a mode, method, window, context and date share their candidates and
    ranks, so each such group is ranked at once (`Signals.top_many`)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for n, setting in enumerate(settings):
        w = setting.weights
        groups.setdefault((setting.mode, w.method, w.window, w.context, w.date), []).append(n)
    out = np.zeros((len(settings), len(questions), len(KS)))
    column = 0
    for table, found in zip(conversations, signals, strict=True):
        ids = np.asarray([*table.ids, ""], dtype=object)  # position -1: no memory
        for signal in found:
            evidence = questions[column].evidence
            for (mode, *_), members in groups.items():
                order = signal.top_many([settings[n].weights for n in members], mode, DEPTH)
                hits = np.vectorize(evidence.__contains__, otypes=[bool])(ids[order])
                found_at = np.cumsum(hits, axis=1)
                for c, k in enumerate(KS):
                    at = min(k, found_at.shape[1]) - 1
                    out[members, column, c] = found_at[:, at] / len(evidence)
            column += 1
    return out


def _box_mean(values: Floats, weights: Floats) -> Floats:
    """The weighted mean of `values` over each point's box of one step along every axis
    (fewer points at the edges); `weights` 0 leaves a point out."""
    total, count = values * weights, weights.astype(np.float64)
    for axis in range(values.ndim):
        total, count = _box_sum(total, axis), _box_sum(count, axis)
    return np.where(count > 0, total / np.where(count > 0, count, 1.0), -1.0)


def _box_sum(array: Floats, axis: int) -> Floats:
    padded = np.moveaxis(array, axis, 0)
    out = padded.copy()
    out[1:] += padded[:-1]
    out[:-1] += padded[1:]
    return np.moveaxis(out, 0, axis)


def _choose(
    settings: Sequence[Setting],
    allowed: np.ndarray[Any, np.dtype[np.bool_]],
    plain: Floats,
) -> int:
    """The allowed setting with the best plateau: its tuning recall averaged over its box on
    its grid (every setting within one step along each axis, among the allowed)."""
    smoothed = np.full(len(settings), -1.0)
    start = 0
    for grid in GRIDS:
        shape = tuple(len(values) for values in grid.axes.values())
        size = int(np.prod(shape))
        part = slice(start, start + size)
        box = _box_mean(plain[part].reshape(shape), allowed[part].reshape(shape).astype(float))
        smoothed[part] = np.where(allowed[part], box.reshape(-1), -1.0)
        start += size
    best = float(smoothed.max())
    tied = np.flatnonzero(smoothed >= best - 1e-12)
    # Ties go to the setting nearest the shipped defaults: a default changes only when the
    # tuning data says so (the date column, say, changes no LoCoMo ranking at all).
    return min((int(n) for n in tied), key=lambda n: (_distance(settings[n].weights), n))


def _distance(weights: FusionWeights) -> tuple[int, float]:
    """How far `weights` are from `_PRIOR`: fields that differ, then the sum of differences."""
    ours, prior = weights.model_dump(), _PRIOR.model_dump()
    numbers = [k for k, v in prior.items() if isinstance(v, float)]
    differ = sum(ours[k] != prior[k] for k in prior)
    return differ, sum(abs(ours[k] - prior[k]) for k in numbers)


def _summary(
    rows: np.ndarray[Any, np.dtype[np.float64]], questions: Sequence[_Question]
) -> dict[str, dict[str, float]]:
    """Mean recall per k, overall and per category, of per-question rows (questions, KS)."""
    out: dict[str, dict[str, float]] = {}
    for column, k in enumerate(KS):
        groups: dict[str, list[float]] = {"overall": []}
        for question, values in zip(questions, rows, strict=True):
            groups["overall"].append(float(values[column]))
            groups.setdefault(question.category, []).append(float(values[column]))
        out[str(k)] = {name: statistics.fmean(v) for name, v in groups.items()}
    return out


def _describe(setting: Setting) -> dict[str, Any]:
    return {"grid": setting.grid, "mode": setting.mode, **setting.weights.model_dump()}


def cross_validate(
    settings: Sequence[Setting],
    recall: Floats,
    questions: Sequence[_Question],
    keep: Keep,
    *,
    target_k: int,
) -> dict[str, Any]:
    """Run the protocol on the settings `keep` allows; return held-out recall and choices."""
    target = KS.index(target_k)
    allowed = np.array([keep(s) for s in settings])
    names = list(dict.fromkeys(q.conversation for q in questions))
    held_rows = np.zeros((len(questions), len(KS)))
    choices: list[dict[str, Any]] = []
    for held_out in names:
        test = np.array([q.conversation == held_out for q in questions])
        chosen = _choose(settings, allowed, recall[:, ~test, target].mean(axis=1))
        held_rows[test] = recall[chosen, test]
        choices.append(
            {
                "held_out": held_out,
                "setting": _describe(settings[chosen]),
                "tuning_recall": float(recall[chosen, ~test, target].mean()),
                "held_out_recall": float(recall[chosen, test, target].mean()),
            }
        )
    pooled = _choose(settings, allowed, recall[:, :, target].mean(axis=1))
    return {
        "recall": _summary(held_rows, questions),
        "choices": choices,
        "chosen_on_all": _describe(settings[pooled]),
        "settings": int(allowed.sum()),
    }


async def run(
    locomo: str,
    *,
    target_k: int = 10,
    embedder: EmbeddingFunction | None = None,
    prefixed: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the sweep, the protocol and the ablation; return the report (see `main --json`).

    Raises:
        LocomoFormatError, ValueError, OSError: As `memweave.bench.retrieval.prepare`; also
            ValueError when fewer than two conversations have questions.
    """
    say = progress or (lambda _: None)
    if target_k not in KS:
        raise ValueError(f"target_k must be one of {KS}, got {target_k!r}")
    started = time.perf_counter()
    embedder = embedder or ChromaDefaultEmbeddings()
    questions, signals, conversations, agreement = await _gather(
        str(locomo), embedder, say, prefixed=prefixed
    )
    if len(conversations) < 2:
        raise ValueError("cross-validation needs at least two conversations with questions")
    cached = time.perf_counter()
    settings = [s for grid in GRIDS for s in grid.settings()]
    say(f"re-fusing {len(settings):,} settings x {len(questions)} questions")
    recall = _score_all(settings, signals, conversations, questions)
    swept = time.perf_counter()
    rows = [
        {"name": name, **cross_validate(settings, recall, questions, keep, target_k=target_k)}
        for name, keep in ABLATIONS
    ]
    defaults = FusionWeights()
    default_rows = {
        mode: _summary(recall_of(defaults, mode, signals, conversations, questions), questions)
        for mode in ("dense", "lexical", "hybrid")
    }
    return {
        "target_k": target_k,
        "ks": list(KS),
        "conversations": list(dict.fromkeys(q.conversation for q in questions)),
        "questions": len(questions),
        "settings": len(settings),
        "ablation": rows,
        "defaults": {"weights": defaults.model_dump(), "in_sample_recall": default_rows},
        "cache_agreement": agreement,
        "seconds": {"ingest_and_signals": cached - started, "sweep": swept - cached},
        "embedder": embedder.name,
        "text": "prefixed" if prefixed else "plain",
    }


def recall_of(
    weights: FusionWeights,
    mode: str,
    signals: Sequence[Sequence[cache.Signals]],
    conversations: Sequence[cache.ConversationIndex],
    questions: Sequence[_Question],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per-question recall@KS of one setting (its BM25 pair must be among the cached)."""
    setting = Setting("fixed", mode, weights, ())
    rows: Floats = _score_all([setting], signals, conversations, questions)[0]
    return rows


def _cells(groups: dict[str, float], names: Iterable[str]) -> str:
    return " ".join(f"{groups.get(name, float('nan')):8.3f}" for name in names)


def _print_table(report: dict[str, Any]) -> None:
    target = str(report["target_k"])
    names = ["overall", *retrieval.CATEGORIES.values()]
    print(
        f"LoCoMo fusion ablation: {', '.join(report['conversations'])}, "
        f"{report['questions']} questions, {report['settings']:,} settings; held-out "
        f"recall@{target} (leave one conversation out), embedder {report['embedder']}"
    )
    short = {
        "multi_hop": "multi",
        "temporal": "temp",
        "open_domain": "open",
        "single_hop": "single",
    }
    header = " ".join(f"{short.get(n, n):>8}" for n in names)
    print(f"{'signals':36} {'@5':>6} {'@25':>6} {header}")
    for row in report["ablation"]:
        recall = row["recall"]
        print(
            f"{row['name']:36} {recall['5']['overall']:6.3f} {recall['25']['overall']:6.3f} "
            f"{_cells(recall[target], names)}"
        )
    print("choices (tuned on the others, measured on the held-out conversation):")
    for row in report["ablation"][:1]:
        for choice in row["choices"]:
            setting = {k: v for k, v in choice["setting"].items() if k not in ("grid", "mode")}
            print(
                f"  held out {choice['held_out']}: tuning {choice['tuning_recall']:.3f}, "
                f"held-out {choice['held_out_recall']:.3f}: {setting}"
            )
        print(f"  chosen on all conversations: {row['chosen_on_all']}")
    defaults = report["defaults"]["in_sample_recall"]
    print(
        "FusionWeights() in sample, recall@"
        + target
        + ": "
        + ", ".join(f"{mode} {defaults[mode][target]['overall']:.3f}" for mode in defaults)
    )
    agreement = report["cache_agreement"]
    print(
        "cached ranking = VectorMemory.search ranking on "
        + ", ".join(f"{mode} {share:.1%}" for mode, share in agreement.items())
        + f" of questions; {report['seconds']['sweep']:.0f} s sweep, "
        f"{report['seconds']['ingest_and_signals']:.0f} s ingest and signals"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse options, run, print."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.retrieval_ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--locomo", required=True, help="a LoCoMo JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--target-k",
        type=positive_int,
        default=10,
        choices=KS,
        help="the recall@k the protocol tunes for (default: 10)",
    )
    parser.add_argument(
        "--prefixed-text",
        action="store_true",
        help="store '[<date>] <speaker>: <text>' as each turn's text (the pre-issue-17 layout)",
    )
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(
            run(
                args.locomo,
                target_k=args.target_k,
                prefixed=args.prefixed_text,
                progress=lambda what: print(what, file=sys.stderr),
            )
        )
    except (ValueError, OSError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
