"""`FusionWeights`: the typed, documented fusion of `VectorMemory`'s retrieval signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from memweave.context import FusionWeights, VectorMemory
from memweave.context._fusion import DEFAULT_FUSION, fuse, hybrid_score, ranked
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
    [{"dense": 0.0, "lexical": 0.0}, {"speaker": -1.0}, {"window": 1.5}, {"rrf_k": 0}, {"x": 1}],
)
def test_fusion_weights_reject_bad_values(options: dict[str, float]) -> None:
    """Negative weights, a window share past 1, no dense nor lexical, unknown fields fail."""
    with pytest.raises(ValidationError):
        FusionWeights(**options)


def test_vector_memory_rejects_a_fusion_that_is_not_fusion_weights() -> None:
    """`fusion=` takes a `FusionWeights`; anything else is a `ConfigurationError`."""
    with pytest.raises(ConfigurationError, match="FusionWeights"):
        VectorMemory(fusion={"dense": 1.0})  # type: ignore[arg-type]


@given(dense=_SCORES, lexical=_SCORES, named=st.sets(st.integers(0, 50)))
def test_fuse_weighted_is_the_weighted_mean(
    dense: dict[int, float], lexical: dict[int, float], named: set[int]
) -> None:
    """Weighted fusion scores each memory with `hybrid_score`, in [0, 1]."""
    fused = fuse(dense, lexical, named, DEFAULT_FUSION)
    assert set(fused) == set(dense) | set(lexical)
    for seq, score in fused.items():
        expected = hybrid_score(dense.get(seq, 0.0), lexical.get(seq, 0.0), seq in named)
        assert score == pytest.approx(expected)
        assert 0.0 <= score <= 1.0


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
