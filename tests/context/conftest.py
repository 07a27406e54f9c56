"""Fixtures for long-term memory tests: an offline Chroma model cache, embedders, memories."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import memweave.context._index
from memweave.context import ChromaDefaultEmbeddings, VectorMemory

SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "models" / "chroma" / "onnx_models"
CHROMA_CACHE = Path.home() / ".cache" / "chroma" / "onnx_models"


def _seed_chroma_cache() -> None:
    """Copy the offline model into Chroma's cache, keeping files already there (`cp -rn`)."""
    if not SHARED_MODELS.is_dir():
        return
    for source in SHARED_MODELS.rglob("*"):
        target = CHROMA_CACHE / source.relative_to(SHARED_MODELS)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


_seed_chroma_cache()


class HashEmbeddings:
    """A small deterministic bag-of-words embedder for storage-rule tests (not for quality)."""

    def __init__(self, dimensions: int = 64, name: str = "test/hash") -> None:
        self.dimensions = dimensions
        self.name = f"{name}-{dimensions}"
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> list[float]:
        values = [0.0] * self.dimensions
        for word in re.findall(r"\w+", text.lower()):
            slot = int.from_bytes(hashlib.blake2b(word.encode()).digest()[:4], "big")
            values[slot % self.dimensions] += 1.0
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [v / norm for v in values]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(text) for text in texts]


@pytest.fixture(params=["catalogue", "chroma"])
def dense_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where a search takes its dense candidates: the catalogue's vectors (views of at most
    `EXACT_VIEW` memories, so every view of these tests) or Chroma's index (larger views)."""
    if request.param == "chroma":
        monkeypatch.setattr(memweave.context._index, "EXACT_VIEW", 0)
    return str(request.param)


@pytest.fixture
def chroma_path(dense_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches take their dense candidates from Chroma's index, whatever the view's size."""
    monkeypatch.setattr(memweave.context._index, "EXACT_VIEW", 0)


@pytest.fixture(scope="session")
def real_embedder() -> ChromaDefaultEmbeddings:
    """Chroma's default model (all-MiniLM-L6-v2), for anything that claims retrieval quality."""
    return ChromaDefaultEmbeddings()


@pytest.fixture
def hash_embedder() -> HashEmbeddings:
    """A fresh deterministic embedder."""
    return HashEmbeddings()


@pytest.fixture
async def make_memory(
    tmp_path: Path, hash_embedder: HashEmbeddings
) -> AsyncIterator[Callable[..., VectorMemory]]:
    """Build `VectorMemory`s in `tmp_path` (hash embedder unless given); all closed after."""
    made: list[VectorMemory] = []

    def make(**options: Any) -> VectorMemory:
        options.setdefault("embedder", hash_embedder)
        if "client" not in options:
            options.setdefault("path", tmp_path / "chroma")
        memory = VectorMemory(**options)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        await memory.aclose()


@pytest.fixture
async def memory(make_memory: Callable[..., VectorMemory]) -> VectorMemory:
    """A `VectorMemory` with the hash embedder in a fresh folder."""
    return make_memory()
