"""Cached retrieval signals of LoCoMo questions, re-fused for any `FusionWeights` in numpy.

A sweep over fusion settings would be slow if every setting searched the store again, so the
signals that do not depend on the weights are computed once per question: the query's cosine
similarity to every memory of its conversation (its own vector and its window's), the BM25
similarities for each pair of column weights swept (`context`, `date`), the memories whose
speaker the question names, and the exact matches. `Signals.top` then ranks one question for
one setting with the same candidates and arithmetic as `HybridIndex.search`:
`check_agreement` compares the two on every question.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from memweave.context._fusion import FusionWeights, named_speakers
from memweave.context._index import HybridIndex, candidate_pool
from memweave.context._lexical import query_terms

__all__ = [
    "ConversationIndex",
    "Signals",
    "build_conversation",
    "build_signals",
    "check_agreement",
]

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass
class ConversationIndex:
    """One conversation's memories as arrays: ids, unit vectors and window vectors."""

    scope: str
    seqs: npt.NDArray[np.int64]
    ids: list[str]
    vectors: npt.NDArray[np.float32]
    windows: npt.NDArray[np.float32]
    """Each memory's vector plus its neighbours', normalised (as `dense_parts` computes)."""
    neighbours: list[list[int]]
    """Positions of each memory's previous and next turn."""
    speakers: list[str | None]
    position: dict[str, int] = field(default_factory=dict)
    """Position of each memory id."""


def build_conversation(index: HybridIndex, scope: str) -> ConversationIndex:
    """Read a scope's memories from the catalogue (blocking; run it on the memory's worker)."""
    seqs = index.lexical.scope_seqs(scope, None)
    rows = index.lexical.rows(seqs)
    where = {seq: n for n, seq in enumerate(seqs)}
    vectors = np.stack([np.frombuffer(rows[seq].vector, dtype="<f4") for seq in seqs])
    neighbours: list[list[int]] = []
    windows = vectors.copy()
    for n, seq in enumerate(seqs):
        row = rows[seq]
        sides = [where[side] for side in (row.prev, row.next) if side is not None and side in where]
        neighbours.append(sides)
        for side in sides:
            windows[n] += vectors[side]
    norms = np.linalg.norm(windows, axis=1, keepdims=True)
    windows = np.where(norms > 0, windows / np.where(norms > 0, norms, 1), 0).astype(np.float32)
    ids = [rows[seq].id for seq in seqs]
    return ConversationIndex(
        scope=scope,
        seqs=np.asarray(seqs, dtype=np.int64),
        ids=ids,
        vectors=vectors,
        windows=windows,
        neighbours=neighbours,
        speakers=[rows[seq].speaker for seq in seqs],
        position={memory_id: n for n, memory_id in enumerate(ids)},
    )


@dataclass
class Signals:
    """One question's signals over its conversation's memories (arrays by position)."""

    own: Floats
    window: Floats
    dense_pool: Mask
    """The nearest `pool` memories by their own vector, and their neighbours."""
    lexical: dict[tuple[float, float], tuple[Floats, Mask]]
    """BM25 similarity (0 where not among the top `pool`), and which memories are among
    them, by `(context, date)` weights."""
    named: Mask
    exact: list[int]
    seqs: npt.NDArray[np.int64]

    def top(self, weights: FusionWeights, mode: str, k: int) -> list[int]:
        """Positions of the best `k` memories, as `HybridIndex.search` ranks them."""
        return [int(n) for n in self.top_many([weights], mode, k)[0] if n >= 0]

    def top_many(self, group: Sequence[FusionWeights], mode: str, k: int) -> npt.NDArray[np.int64]:
        """`top` for several weights at once (one row each); they must share `method`,
        `window`, `context` and `date`, which fix the candidates and their ranks."""
        first = group[0]
        lexical, found = self.lexical[(first.context, first.date)]
        dense = (1.0 - first.window) * self.own + first.window * self.window
        if mode == "dense":
            pool, scores = self.dense_pool, np.tile(dense, (len(group), 1))
        elif mode == "lexical":
            pool, scores = found, np.tile(lexical, (len(group), 1))
        else:
            pool = self.dense_pool | found
            scores = _fused(dense, lexical, pool, self.named, group)
        scores = np.where(pool, scores, -1.0)
        scores[:, self.exact] = 2.0
        # Positions follow seqs upwards, so a stable sort breaks ties by the lower seq, as
        # `ranked` does; memories out of the pools (-1) sort last and are cut below.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(scores, order, axis=1) >= 0
        if not kept.all():
            order = np.where(kept, order, -1)
        return np.asarray(order, dtype=np.int64)


def _column(values: Sequence[float]) -> Floats:
    return np.asarray(values, dtype=np.float64)[:, np.newaxis]


def _fused(
    dense: Floats,
    lexical: Floats,
    pool: Mask,
    named: Mask,
    group: Sequence[FusionWeights],
) -> Floats:
    """Hybrid scores, one row per weights of `group`."""
    d = _column([w.dense for w in group])
    l = _column([w.lexical for w in group])  # noqa: E741
    s = _column([w.speaker for w in group])
    if group[0].method == "weighted":
        return np.asarray((d * dense + l * lexical + s * named) / (d + l + s))
    offset = _column([w.rrf_k for w in group])
    dense_rank = _ranks(dense, pool)
    lexical_rank = _ranks(lexical, pool & (lexical > 0))
    value = d / (offset + dense_rank) + l / (offset + lexical_rank)
    value += np.where(named & pool, s / (offset + 1), 0.0)
    return np.asarray(np.clip(value / ((d + l + s) / (offset + 1)), 0.0, 1.0))


def _ranks(scores: Floats, mask: Mask) -> Floats:
    """1-based ranks by score (ties: lower position first, as seqs ascend) of the masked
    memories; infinite for the others, so they add nothing to a reciprocal rank."""
    chosen = np.flatnonzero(mask)
    order = np.lexsort((chosen, -scores[chosen]))
    ranks = np.full(len(scores), np.inf)
    ranks[chosen[order]] = np.arange(1, len(chosen) + 1)
    return ranks


def build_signals(
    index: HybridIndex,
    conversation: ConversationIndex,
    questions: Sequence[str],
    vectors: Sequence[Sequence[float]],
    *,
    k: int,
    bm25: Iterable[tuple[float, float]],
) -> list[Signals]:
    """Compute each question's signals (blocking; run it on the memory's worker).

    Args:
        index: The store's index.
        conversation: The conversation the questions are about.
        questions: The question texts.
        vectors: Their embeddings, in order.
        k: The search depth the sweep ranks to (it sets the candidate pools).
        bm25: The `(context, date)` BM25 weights to precompute.
    """
    pool = candidate_pool(k)
    pairs = list(dict.fromkeys(bm25))
    names = [name for name in {s for s in conversation.speakers if s is not None}]
    position = {int(seq): n for n, seq in enumerate(conversation.seqs)}
    size = len(conversation.seqs)
    out: list[Signals] = []
    for question, vector in zip(questions, vectors, strict=True):
        query = np.asarray(vector, dtype=np.float32)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        raw = conversation.vectors @ query
        own = np.clip(raw, 0.0, 1.0).astype(np.float64)
        window = np.clip(conversation.windows @ query, 0.0, 1.0).astype(np.float64)
        dense_pool = np.zeros(size, dtype=bool)
        nearest = np.argsort(-raw, kind="stable")[:pool]
        dense_pool[nearest] = True
        for n in nearest:
            dense_pool[conversation.neighbours[int(n)]] = True
        lexical: dict[tuple[float, float], tuple[Floats, Mask]] = {}
        terms = query_terms(question)
        for context, date in pairs:
            found = index.lexical.search(
                conversation.scope, None, terms, pool, weights=(1.0, context, date)
            )
            scores = np.zeros(size, dtype=np.float64)
            hit = np.zeros(size, dtype=bool)
            for seq, score in found.items():
                scores[position[seq]] = score
                hit[position[seq]] = True
            lexical[(context, date)] = (scores, hit)
        named_set = named_speakers(question, names)
        named = np.array([speaker in named_set for speaker in conversation.speakers])
        exact = [position[seq] for seq in index.lexical.exact(conversation.scope, None, question)]
        out.append(Signals(own, window, dense_pool, lexical, named, exact, conversation.seqs))
    return out


def check_agreement(
    index: HybridIndex,
    conversation: ConversationIndex,
    questions: Sequence[str],
    vectors: Sequence[Sequence[float]],
    signals: Sequence[Signals],
    weights: FusionWeights,
    k: int,
) -> dict[str, Any]:
    """How often the cached ranking equals `HybridIndex.search`'s, per mode (blocking)."""
    out: dict[str, Any] = {}
    for mode in ("dense", "lexical", "hybrid"):
        same = 0
        for question, vector, signal in zip(questions, vectors, signals, strict=True):
            found = index.search(
                conversation.scope, None, question, vector, k=k, mode=mode, fusion=weights
            )
            cached = [conversation.ids[n] for n in signal.top(weights, mode, k)]
            same += [row.id for row, _ in found] == cached
        out[mode] = same / max(1, len(questions))
    return out
