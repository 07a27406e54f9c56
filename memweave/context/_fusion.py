"""Scoring for vector memory: dense similarity with neighbour context, and the hybrid fusion.

Every score is a similarity in [0, 1], higher is better:

- dense: the mean of the cosine similarity of the query to the memory's own vector and to the
  normalised sum of the vectors of the memory and its neighbouring turns (its "window"), each
  clipped at 0. The window costs no model call: it is computed from stored vectors.
- lexical: BM25 relative to the score of the query itself (see `memweave.context._fts`).
- hybrid: a weighted mean of dense, lexical and a speaker signal (1 when the query names the
  memory's speaker). The weights were chosen on LoCoMo's development conversations and are
  round numbers on a broad plateau, not a tuned peak (see `benchmarks/retrieval.py`).

A memory whose text equals the query (ignoring case and whitespace) scores 1 in every mode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONTEXT_WEIGHT",
    "DATE_WEIGHT",
    "DENSE_WEIGHT",
    "LEXICAL_WEIGHT",
    "SPEAKER_WEIGHT",
    "dense_scores",
    "hybrid_score",
    "named_speakers",
    "unit",
]

DENSE_WEIGHT = 1.0
"""Weight of the dense similarity in the hybrid score."""
LEXICAL_WEIGHT = 1.25
"""Weight of the lexical similarity in the hybrid score."""
SPEAKER_WEIGHT = 0.15
"""Weight of "the query names this memory's speaker" in the hybrid score."""
CONTEXT_WEIGHT = 0.3
"""Weight of the neighbouring turns' text in BM25, the memory's own text weighing 1."""
DATE_WEIGHT = 1.0
"""Weight of the memory's date ("Monday 8 8th May 2023 05-08 day20230508 day0508") in BM25."""

Vector = npt.NDArray[np.float32]


def unit(vector: Sequence[float] | Vector) -> Vector:
    """Return `vector` as float32 scaled to length 1 (a zero vector stays zero)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def dense_scores(
    query: Vector,
    vectors: Mapping[int, Vector],
    links: Mapping[int, tuple[int | None, int | None]],
    candidates: Iterable[int],
) -> dict[int, float]:
    """Dense similarity of each candidate: mean of its own and its window's cosine similarity.

    Args:
        query: The query's unit vector.
        vectors: Unit vectors by memory seq; must hold every candidate (and its neighbours,
            where they exist).
        links: `(prev, next)` seq of each candidate's neighbouring turns in its session.
        candidates: The seqs to score.
    """
    out: dict[int, float] = {}
    for seq in candidates:
        own = vectors.get(seq)
        if own is None:
            continue
        window = own.copy()
        for side in links.get(seq, (None, None)):
            if side is not None and side in vectors:
                window += vectors[side]
        alone = float(np.dot(query, own))
        norm = float(np.linalg.norm(window))
        together = float(np.dot(query, window)) / norm if norm > 0 else 0.0
        out[seq] = (max(0.0, min(1.0, alone)) + max(0.0, min(1.0, together))) / 2
    return out


def named_speakers(query: str, speakers: Iterable[str]) -> set[str]:
    """The speakers whose name appears in `query` as a whole word, ignoring case."""
    named: set[str] = set()
    for speaker in speakers:
        name = speaker.strip()
        if len(name) < 2:
            continue
        if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", query, flags=re.IGNORECASE):
            named.add(speaker)
    return named


def hybrid_score(dense: float, lexical: float, speaker_named: bool) -> float:
    """The weighted mean of the three signals, in [0, 1]."""
    total = DENSE_WEIGHT + LEXICAL_WEIGHT + SPEAKER_WEIGHT
    value = DENSE_WEIGHT * dense + LEXICAL_WEIGHT * lexical
    if speaker_named:
        value += SPEAKER_WEIGHT
    return value / total
