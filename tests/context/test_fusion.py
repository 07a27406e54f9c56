"""`FusionWeights`: the typed, documented fusion of `VectorMemory`'s retrieval signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from memweave.context import FusionWeights, VectorMemory
from memweave.context._fusion import DEFAULT_FUSION, fuse, hybrid_score, lexical_share, ranked
from memweave.errors import ConfigurationError

_SCORES = st.dictionaries(
    st.integers(min_value=0, max_value=50), st.floats(min_value=0.0, max_value=1.0), max_size=30
)


def test_fusion_weights_are_frozen() -> None:
    """A `FusionWeights` cannot be changed after it is made."""
    weights = FusionWeights()
    with pytest.raises(ValidationError):
        weights.dense = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"dense": 0.0, "lexical": 0.0},
        {"speaker": -1.0},
        {"window": 1.5},
        {"rrf_k": 0},
        {"x": 1},
        {"dense_floor": 0.6, "dense_sure": 0.5},
        {"dense_sure": 1.5},
    ],
)
def test_fusion_weights_reject_bad_values(options: dict[str, float]) -> None:
    """Negative weights, a window share past 1, no dense nor lexical, a dense floor not below
    the sure level, unknown fields fail."""
    with pytest.raises(ValidationError):
        FusionWeights(**options)


def test_vector_memory_rejects_a_fusion_that_is_not_fusion_weights() -> None:
    """`fusion=` takes a `FusionWeights`; anything else is a `ConfigurationError`."""
    with pytest.raises(ConfigurationError, match="FusionWeights"):
        VectorMemory(fusion={"dense": 1.0})  # type: ignore[arg-type]


@given(dense=_SCORES, lexical=_SCORES, named=st.sets(st.integers(0, 50)))
def test_fuse_weighted_is_the_calibrated_weighted_mean(
    dense: dict[int, float], lexical: dict[int, float], named: set[int]
) -> None:
    """Weighted fusion scores each memory with `hybrid_score` at the query's lexical share,
    in [0, 1]."""
    fused = fuse(dense, lexical, named, DEFAULT_FUSION)
    assert set(fused) == set(dense) | set(lexical)
    share = lexical_share(
        max(lexical.values(), default=0.0), max(dense.values(), default=0.0), DEFAULT_FUSION
    )
    for seq, score in fused.items():
        expected = hybrid_score(
            dense.get(seq, 0.0), lexical.get(seq, 0.0), seq in named, share=share
        )
        assert score == pytest.approx(expected)
        assert 0.0 <= score <= 1.0


@given(dense=_SCORES, lexical=_SCORES, named=st.sets(st.integers(0, 50)))
def test_fuse_weighted_keeps_the_order_of_the_plain_mean(
    dense: dict[int, float], lexical: dict[int, float], named: set[int]
) -> None:
    """The calibration scales a query's scores alike: it never reorders its hits."""
    fused = fuse(dense, lexical, named, DEFAULT_FUSION)
    plain = {
        seq: hybrid_score(dense.get(seq, 0.0), lexical.get(seq, 0.0), seq in named) for seq in fused
    }
    for a in fused:
        for b in fused:
            if plain[a] > plain[b] + 1e-9:
                assert fused[a] >= fused[b]


def test_fuse_strong_dense_match_without_lexical_support_keeps_its_similarity() -> None:
    """A query no memory shares a term with, matching one strongly by meaning, scores it
    on the signals that fired (dense and speaker), not divided by the lexical weight too."""
    weights = DEFAULT_FUSION
    fused = fuse({1: 0.55, 2: 0.3}, {}, set(), weights)
    assert fused[1] == pytest.approx(0.55 / (weights.dense + weights.speaker))
    assert hybrid_score(0.55, 0.0, False) < 0.55 / 2 < fused[1]


def test_fuse_weak_dense_match_without_lexical_support_is_not_inflated() -> None:
    """When the best dense match is at most `dense_floor`, nothing is rescaled: an unrelated
    query scores its plain weighted mean."""
    fused = fuse({1: DEFAULT_FUSION.dense_floor, 2: 0.1}, {}, set(), DEFAULT_FUSION)
    assert fused[1] == pytest.approx(hybrid_score(DEFAULT_FUSION.dense_floor, 0.0, False))


def test_fuse_full_lexical_match_is_the_plain_weighted_mean() -> None:
    """When the lexical signal fires fully for the query, the mean divides by every weight."""
    dense, lexical = {1: 0.9, 2: 0.4}, {1: 1.0, 2: 0.2}
    fused = fuse(dense, lexical, {2}, DEFAULT_FUSION)
    assert fused[1] == pytest.approx(hybrid_score(0.9, 1.0, False))
    assert fused[2] == pytest.approx(hybrid_score(0.4, 0.2, True))


@pytest.mark.parametrize(
    ("best_lexical", "best_dense", "expected"),
    [(0.0, 0.2, 1.0), (0.0, 0.425, 0.5), (0.0, 0.9, 0.0), (0.7, 0.9, 0.7), (0.3, 0.35, 1.0)],
)
def test_lexical_share_is_the_larger_of_lexical_evidence_and_dense_doubt(
    best_lexical: float, best_dense: float, expected: float
) -> None:
    """The share falls linearly from 1 at `dense_floor` (0.35) to 0 at `dense_sure` (0.5),
    and never below the query's best lexical score."""
    assert lexical_share(best_lexical, best_dense, DEFAULT_FUSION) == pytest.approx(expected)


def test_lexical_share_without_dense_weight_is_one() -> None:
    """With the dense signal off, there is no dense confidence to stand in for the lexical."""
    weights = FusionWeights(dense=0.0, speaker=0.0)
    assert lexical_share(0.0, 0.9, weights) == 1.0
    assert fuse({1: 0.9}, {}, set(), weights) == {1: 0.0}


@given(dense=_SCORES, lexical=_SCORES, named=st.sets(st.integers(0, 50)))
def test_fuse_rrf_scores_stay_in_unit_interval(
    dense: dict[int, float], lexical: dict[int, float], named: set[int]
) -> None:
    """Reciprocal-rank fusion scores are in [0, 1]; first in every ranking scores 1."""
    weights = FusionWeights(method="rrf")
    fused = fuse(dense, lexical, named, weights)
    assert all(0.0 <= score <= 1.0 for score in fused.values())
    if dense and lexical:
        top_dense = min(dense, key=lambda seq: (-dense[seq], seq))
        top_lexical = min(
            (seq for seq in lexical if lexical[seq] > 0),
            key=lambda seq: (-lexical[seq], seq),
            default=None,
        )
        if top_dense == top_lexical and top_dense in named:
            assert fused[top_dense] == pytest.approx(1.0)


def test_fuse_rrf_ranks_by_reciprocal_rank_not_by_scale() -> None:
    """With rrf, a memory ranked well by both signals beats one that tops only one, however
    large that one's score."""
    dense = {1: 0.99, 2: 0.5, 3: 0.49, 4: 0.48}
    lexical = {4: 0.3, 2: 0.29, 3: 0.1, 1: 0.01}
    fused = fuse(dense, lexical, set(), FusionWeights(method="rrf", lexical=1.0))
    assert ranked(fused, [], 4)[0] == 2


def test_fuse_weight_zero_turns_a_signal_off() -> None:
    """A speaker weight of 0 ranks as if no speaker were named."""
    dense, lexical = {1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.5}
    weights = FusionWeights(speaker=0.0)
    assert fuse(dense, lexical, {1}, weights) == fuse(dense, lexical, set(), weights)


def test_ranked_puts_exact_matches_first() -> None:
    """Exact matches lead whatever their fused score; ties break by the lower seq."""
    assert ranked({1: 0.9, 2: 0.1, 3: 0.9}, [2], 3) == [2, 1, 3]


@pytest.mark.parametrize("method", ["weighted", "rrf"])
async def test_search_uses_the_memory_fusion(
    make_memory: Callable[..., VectorMemory], method: str
) -> None:
    """`VectorMemory(fusion=...)` shapes hybrid search; scores stay similarities in [0, 1]."""
    memory = make_memory(fusion=FusionWeights(method=method))
    assert memory.fusion.method == method
    for n, text in enumerate(["Ada likes tea", "Bob plays chess", "Ada went to Lyon in May"]):
        await memory.add(text, user_id="u", session_id="s", speaker="Ada" if n != 1 else "Bob")
    hits = await memory.search("Ada in Lyon", user_id="u", k=3)
    assert hits[0].text == "Ada went to Lyon in May"
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)


async def test_lexical_context_weight_zero_ignores_neighbour_text(
    make_memory: Callable[..., VectorMemory], tmp_path: Path
) -> None:
    """With `context=0`, a turn is no longer found by words only its neighbours hold."""
    plain = make_memory(path=tmp_path / "plain")
    blind = make_memory(path=tmp_path / "blind", fusion=FusionWeights(context=0.0))
    for memory in (plain, blind):
        await memory.add("What instrument do you play?", user_id="u", session_id="s")
        await memory.add("The clarinet, since I was ten.", user_id="u", session_id="s")
    found = await plain.search("instrument", user_id="u", k=5, mode="lexical")
    assert "The clarinet, since I was ten." in [hit.text for hit in found]
    found = await blind.search("instrument", user_id="u", k=5, mode="lexical")
    assert "The clarinet, since I was ten." not in [hit.text for hit in found]
