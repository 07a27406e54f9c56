"""Smoke test of `python -m memweave.bench.shared_memory`: it runs and reports every figure."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from memweave.bench import shared_memory
from memweave.bench.shared_memory import HashingEmbeddings

FIGURES = {"open", "cold_user", "steady", "after_write", "raw_chroma"}


def test_report_holds_every_figure_for_the_collection_it_filled() -> None:
    report = asyncio.run(shared_memory.run(users=4, per_user=3, searches=5))
    # Every memory written, plus the writer's one add per search.
    assert report["records"] == 4 * 3 + 5
    assert set(report["timings"]) == FIGURES
    samples = {name: figure["samples"] for name, figure in report["timings"].items()}
    assert samples == {"open": 1, "cold_user": 3, "steady": 5, "after_write": 5, "raw_chroma": 5}
    for figure in report["timings"].values():
        assert 0 < figure["p50_ms"] <= figure["p95_ms"]
    assert report["versions"]["chromadb"]


def test_json_output_is_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert shared_memory.main(["--users", "2", "--per-user", "2", "--searches", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 2 * 2 + 2
    assert report["timings"]["after_write"]["samples"] == 2


@pytest.mark.parametrize(
    ("option", "value"), [("users", 1), ("users", 0), ("per_user", -1), ("searches", True)]
)
def test_bad_sizes_are_refused_before_anything_is_written(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        asyncio.run(shared_memory.run(**{option: value}))  # type: ignore[arg-type]


def test_hashing_embeddings_give_deterministic_unit_vectors() -> None:
    embedder = HashingEmbeddings(dimensions=32)
    first, again = asyncio.run(embedder.embed(["tea in paris", "tea in paris"]))
    assert first == again
    assert len(first) == 32
    assert math.isclose(sum(value * value for value in first), 1.0, rel_tol=1e-6)
