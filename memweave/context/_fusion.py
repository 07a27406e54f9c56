"""Scoring for vector memory: the signals of a search, and how hybrid search fuses them.

Every score is a similarity in [0, 1], higher is better:

- dense: a mix of the cosine similarity of the query to the memory's own vector and to the
  normalised sum of the vectors of the memory and its neighbouring turns (its "window"), each
  clipped at 0. The window costs no model call: it is computed from stored vectors.
- lexical: BM25 relative to the score of the query itself (see `memweave.context._fts`), over
  the memory's text, its neighbours' text and its date, each column weighted.
- speaker: 1 when the query names the memory's speaker.
- hybrid: the signals fused as `FusionWeights` says: a weighted mean of the scores (the
  default), or reciprocal-rank fusion.

The weighted mean is calibrated per query: the lexical weight counts in its denominator only
as far as the lexical signal fires for the query (its best score among the candidates), or
else as far as the dense signal is unsure (`FusionWeights.dense_floor`, `dense_sure`). So a
paraphrase sharing no term with a memory it matches strongly by meaning keeps a score near its
dense similarity, where dividing by every weight would cut it to under half, while a query
matching nothing well either way is not inflated. The calibration scales all of a query's
scores alike, so it never changes their order.

A memory whose text equals the query (ignoring case and whitespace) scores 1 in every mode.
`FusionWeights()` holds the defaults; `memweave/bench/retrieval_ablation.py` is the sweep and
ablation, cross-validated on LoCoMo's two development conversations, that chose them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CONTEXT_WEIGHT",
    "DATE_WEIGHT",
    "DEFAULT_FUSION",
    "DENSE_WEIGHT",
    "LEXICAL_WEIGHT",
    "SPEAKER_WEIGHT",
    "FusionMethod",
    "FusionWeights",
    "dense_parts",
    "dense_scores",
    "fuse",
    "hybrid_score",
    "lexical_share",
    "mix_dense",
    "named_speakers",
    "ranked",
    "unit",
]

FusionMethod = Literal["weighted", "rrf"]
"""`weighted`: a weighted mean of the signals' scores; `rrf`: reciprocal-rank fusion."""


class FusionWeights(BaseModel):
    """How `VectorMemory` scores a memory: the weights of its retrieval signals.

    Hybrid search takes candidates from the dense and the lexical index and scores each with
    three signals, dense, lexical and speaker (see `memweave.context._fusion`). With
    `method="weighted"` (the default) a memory's score is their weighted mean,

        (dense * d + lexical * l + speaker * s) / (dense + lexical + speaker)

    where d and l are the dense and lexical similarities in [0, 1] and s is 1 when the query
    names the memory's speaker, else 0: a similarity in [0, 1] that `min_score` can cut on.
    The `lexical` weight in the denominator is scaled, per query, by the larger of the best
    lexical score of any candidate and the dense signal's doubt: 1 when the best dense
    similarity is at most `dense_floor`, falling linearly to 0 at `dense_sure`. A query whose
    words no memory shares but whose meaning one matches strongly is thus scored on the signals
    that fired, while the order of a query's hits stays that of the plain weighted mean.
    With `method="rrf"`, each signal ranks the candidates and a memory scores
    `sum(weight / (rrf_k + rank))`, divided by the most a memory can score (first in every
    ranking), so 1 is still the best; the scores are then ranks, not similarities, and
    `min_score` cuts on those.

    `window`, `context` and `date` shape the dense and lexical signals themselves, and apply
    in every mode (`dense`, `lexical` and `hybrid`). A weight of 0 turns its signal off.

    The defaults were chosen by cross-validation on LoCoMo's two development conversations
    (tuned on one, measured on the other); `python -m memweave.bench.retrieval_ablation` reruns
    that protocol and prints each signal's ablation.

    Example:
        ```python
        memory = VectorMemory("./memory", fusion=FusionWeights(speaker=0.0))
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: FusionMethod = "weighted"
    """`weighted` (a weighted mean of the scores) or `rrf` (reciprocal-rank fusion)."""
    dense: float = Field(default=1.0, ge=0.0, le=100.0)
    """Weight of the dense (embedding) similarity in hybrid search."""
    lexical: float = Field(default=1.25, ge=0.0, le=100.0)
    """Weight of the lexical (BM25) similarity in hybrid search."""
    speaker: float = Field(default=0.4, ge=0.0, le=100.0)
    """Weight of "the query names this memory's speaker" in hybrid search."""
    window: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of the window similarity (the memory with its neighbouring turns) in the dense
    similarity, the memory's own vector taking the rest; 0 compares the memory alone."""
    context: float = Field(default=0.5, ge=0.0, le=100.0)
    """BM25 weight of the neighbouring turns' text, the memory's own text weighing 1; the
    neighbours indexed are `VectorMemory(context_window=...)` turns on each side."""
    date: float = Field(default=2.0, ge=0.0, le=100.0)
    """BM25 weight of the memory's date ("Monday 8 8th May 2023 05-08 ..."), so a query
    naming a day, month or year finds what was said then."""
    rrf_k: float = Field(default=60.0, gt=0.0, le=10_000.0)
    """The rank offset of reciprocal-rank fusion (`method="rrf"` only); larger flattens it."""
    dense_floor: float = Field(default=0.35, ge=0.0, le=1.0)
    """Best dense similarity of a query at or below which the dense signal is no evidence on
    its own (`method="weighted"`): with all-MiniLM-L6-v2, an unrelated question's best match
    scores less in 3 of 4 cases in a large store and 19 of 20 in a small one
    (`python -m memweave.bench.min_score`, dense mode)."""
    dense_sure: float = Field(default=0.5, ge=0.0, le=1.0)
    """Best dense similarity of a query from which a match needs no lexical support to keep
    its score (`method="weighted"`): about the median dense similarity of a question's
    evidence in the same benchmark. Between the two, the lexical weight fades linearly; the
    pair was chosen from a plateau of the benchmark's thresholds and unrelated injections."""

    @model_validator(mode="after")
    def _some_weight(self) -> FusionWeights:
        if self.dense + self.lexical <= 0:
            raise ValueError("dense and lexical cannot both be 0: hybrid search needs one")
        if self.dense_floor >= self.dense_sure:
            raise ValueError("dense_floor must be below dense_sure")
        return self

    @property
    def bm25_weights(self) -> tuple[float, float, float]:
        """The `bm25()` weights of the text, context and date columns."""
        return (1.0, self.context, self.date)


DEFAULT_FUSION = FusionWeights()
"""The default weights."""

# The defaults under their historic names (the LangGraph store uses the same fusion).
DENSE_WEIGHT = DEFAULT_FUSION.dense
"""Default weight of the dense similarity in the hybrid score."""
LEXICAL_WEIGHT = DEFAULT_FUSION.lexical
"""Default weight of the lexical similarity in the hybrid score."""
SPEAKER_WEIGHT = DEFAULT_FUSION.speaker
"""Default weight of "the query names this memory's speaker" in the hybrid score."""
CONTEXT_WEIGHT = DEFAULT_FUSION.context
"""Default weight of the neighbouring turns' text in BM25, the memory's own text weighing 1."""
DATE_WEIGHT = DEFAULT_FUSION.date
"""Default weight of the memory's date in BM25."""

Vector = npt.NDArray[np.float32]


def unit(vector: Sequence[float] | Vector) -> Vector:
    """Return `vector` as float32 scaled to length 1 (a zero vector stays zero)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def _clip(value: float) -> float:
    return max(0.0, min(1.0, value))


def dense_parts(
    query: Vector,
    vectors: Mapping[int, Vector],
    links: Mapping[int, tuple[int | None, int | None]],
    candidates: Iterable[int],
) -> dict[int, tuple[float, float]]:
    """Each candidate's `(own, window)` cosine similarity to the query, clipped to [0, 1].

    Args:
        query: The query's unit vector.
        vectors: Unit vectors by memory seq; must hold every candidate (and its neighbours,
            where they exist).
        links: `(prev, next)` seq of each candidate's neighbouring turns in its session.
        candidates: The seqs to score; those without a vector are left out.
    """
    seqs = [seq for seq in dict.fromkeys(candidates) if seq in vectors]
    if not seqs:
        return {}
    own = np.array([vectors[seq] for seq in seqs])
    zero = np.zeros_like(own[0])
    window = own
    for side in (0, 1):  # prev, then next: the same float order as adding them one by one
        near = [links.get(seq, (None, None))[side] for seq in seqs]
        window = window + np.array([zero if n is None else vectors.get(n, zero) for n in near])
    alone = own @ query
    norms = np.linalg.norm(window, axis=1)
    together = np.divide(window @ query, norms, out=np.zeros_like(norms), where=norms > 0)
    pairs = zip(
        np.clip(alone, 0.0, 1.0).tolist(), np.clip(together, 0.0, 1.0).tolist(), strict=True
    )
    return dict(zip(seqs, pairs, strict=True))


def mix_dense(parts: Mapping[int, tuple[float, float]], window: float) -> dict[int, float]:
    """The dense similarity of each memory from its `(own, window)` parts."""
    return {seq: (1.0 - window) * own + window * near for seq, (own, near) in parts.items()}


def dense_scores(
    query: Vector,
    vectors: Mapping[int, Vector],
    links: Mapping[int, tuple[int | None, int | None]],
    candidates: Iterable[int],
    *,
    window: float = DEFAULT_FUSION.window,
) -> dict[int, float]:
    """Dense similarity of each candidate: its own and its window's similarity, mixed by
    `window` (see `dense_parts`)."""
    return mix_dense(dense_parts(query, vectors, links, candidates), window)


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


def lexical_share(best_lexical: float, best_dense: float, weights: FusionWeights) -> float:
    """How much of the lexical weight a query's weighted mean divides by, in [0, 1]: the best
    lexical score of its candidates, or the dense signal's doubt if larger (1 at or below
    `weights.dense_floor`, 0 from `weights.dense_sure` on)."""
    if weights.dense <= 0:
        return 1.0
    span = weights.dense_sure - weights.dense_floor
    doubt = 1.0 - _clip((best_dense - weights.dense_floor) / span)
    return max(_clip(best_lexical), doubt)


def hybrid_score(
    dense: float,
    lexical: float,
    speaker_named: bool,
    weights: FusionWeights = DEFAULT_FUSION,
    *,
    share: float = 1.0,
) -> float:
    """The weighted mean of the three signals, in [0, 1], its lexical weight counting `share`
    in the denominator (see `lexical_share`; a `lexical` above `share` counts as `share`)."""
    total = weights.dense + weights.lexical * share + weights.speaker
    if total <= 0:
        return 0.0
    value = weights.dense * dense + weights.lexical * min(lexical, share)
    if speaker_named:
        value += weights.speaker
    return _clip(value / total)


def _ranks(scores: Mapping[int, float]) -> dict[int, int]:
    """1-based rank of each memory by score, best first (ties broken by seq)."""
    order = sorted(scores, key=lambda seq: (-scores[seq], seq))
    return {seq: rank for rank, seq in enumerate(order, start=1)}


def fuse(
    dense: Mapping[int, float],
    lexical: Mapping[int, float],
    named: Collection[int],
    weights: FusionWeights = DEFAULT_FUSION,
) -> dict[int, float]:
    """The hybrid score of every memory that has a dense or a lexical score.

    Args:
        dense: Dense similarity by memory seq.
        lexical: Lexical similarity by memory seq (memories matching no query term absent).
        named: The seqs whose speaker the query names.
        weights: How to fuse.
    """
    seqs = set(dense) | set(lexical)
    if weights.method == "weighted":
        share = lexical_share(
            max(lexical.values(), default=0.0), max(dense.values(), default=0.0), weights
        )
        return {
            seq: hybrid_score(
                dense.get(seq, 0.0), lexical.get(seq, 0.0), seq in named, weights, share=share
            )
            for seq in seqs
        }
    offset = weights.rrf_k
    dense_rank = _ranks({seq: dense[seq] for seq in seqs if seq in dense})
    lexical_rank = _ranks({seq: score for seq, score in lexical.items() if score > 0})
    best = (weights.dense + weights.lexical + weights.speaker) / (offset + 1)
    out: dict[int, float] = {}
    for seq in seqs:
        value = 0.0
        if seq in dense_rank:
            value += weights.dense / (offset + dense_rank[seq])
        if seq in lexical_rank:
            value += weights.lexical / (offset + lexical_rank[seq])
        if seq in named:
            value += weights.speaker / (offset + 1)
        out[seq] = _clip(value / best)
    return out


def ranked(scores: Mapping[int, float], exact: Sequence[int], k: int) -> list[int]:
    """The best `k` seqs: exact matches first (in order), then by score, then by seq."""
    first = set(exact)
    merged = dict(scores)
    for seq in exact:
        merged[seq] = 1.0
    return sorted(merged, key=lambda seq: (seq not in first, -merged[seq], seq))[:k]
