"""The opt-in int8 model: built once, cached atomically, close to fp32; the default stays exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memweave._models import embedding_model_dir
from memweave._onnx_int8 import INT8_RECIPE, quantized_model
from memweave.context import ChromaDefaultEmbeddings, VectorMemory
from memweave.errors import ConfigurationError

TEXTS = [
    "Hey Mel! Good to see you! How have you been?",
    "I went to a LGBTQ support group yesterday and it was so powerful.",
    "Yes, I play the clarinet! Started when I was young and it's been great.",
    "[1:56 pm on 8 May, 2023] Caroline: I'm thinking about a career in counseling.",
    "We went camping at the beach with the kids last weekend.",
]
_FP32 = embedding_model_dir().path / "model.onnx"


@pytest.fixture(scope="session")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the int8 model, built once for the session."""
    folder = tmp_path_factory.mktemp("int8-cache")
    ChromaDefaultEmbeddings()._runner._load()  # the fp32 files are in place (seeded or fetched)
    quantized_model(_FP32, folder)
    return folder


@pytest.fixture(scope="session")
def int8_embedder(int8_cache: Path) -> ChromaDefaultEmbeddings:
    """The int8 embedder on the session's cache."""
    return ChromaDefaultEmbeddings(quantized=True, cache_dir=int8_cache)


async def test_default_embedder_matches_chroma_default_embedding_function(
    real_embedder: ChromaDefaultEmbeddings,
) -> None:
    """Without `quantized`, the vectors are chromadb's DefaultEmbeddingFunction's within 1e-6."""
    from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

    ours = np.array(await real_embedder.embed(TEXTS))
    stock = np.array(DefaultEmbeddingFunction()(TEXTS))
    assert np.abs(ours - stock).max() < 1e-6


async def test_quantized_embedder_stays_close_to_fp32(
    real_embedder: ChromaDefaultEmbeddings, int8_embedder: ChromaDefaultEmbeddings
) -> None:
    """int8 vectors are unit length and within 0.05 cosine of the fp32 ones."""
    exact = np.array(await real_embedder.embed(TEXTS))
    close = np.array(await int8_embedder.embed(TEXTS))
    assert np.allclose(np.linalg.norm(close, axis=1), 1.0, atol=1e-5)
    assert (exact * close).sum(axis=1).min() > 0.95
    assert not np.allclose(exact, close, atol=1e-6)  # really the int8 model


def test_quantized_embedder_has_its_own_name(int8_embedder: ChromaDefaultEmbeddings) -> None:
    """The int8 embedder is named apart, so a collection never mixes its vectors with fp32's."""
    assert int8_embedder.name == "chroma/all-MiniLM-L6-v2@int8"
    assert ChromaDefaultEmbeddings().name == "chroma/all-MiniLM-L6-v2"
    assert int8_embedder.dimensions == 384


def test_quantized_model_is_cached_by_hash_and_recipe(int8_cache: Path) -> None:
    """A second call reuses the cached file; no temporary file is left behind."""
    [built] = list(int8_cache.glob("*.onnx"))
    assert INT8_RECIPE in built.name
    stamp = built.stat().st_mtime_ns
    assert quantized_model(_FP32, int8_cache) == built
    assert built.stat().st_mtime_ns == stamp
    assert not list(int8_cache.glob(".building-*"))


def test_quantized_model_builds_whole_under_concurrent_processes(tmp_path: Path) -> None:
    """Processes building the same int8 model at once each finish; one whole file remains."""
    script = (
        "import sys; from pathlib import Path; from memweave._onnx_int8 import quantized_model;"
        "print(quantized_model(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(_FP32), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    paths = {out.decode().strip() for out, _ in outputs}
    [built] = list(tmp_path.glob("*.onnx"))
    assert paths == {str(built)}
    assert not list(tmp_path.glob(".building-*"))
    import onnx

    onnx.checker.check_model(str(built))


def test_vector_memory_quantized_refuses_an_embedder(tmp_path: Path) -> None:
    """`quantized=True` picks the default model's int8 copy, so it cannot go with `embedder=`."""
    with pytest.raises(ConfigurationError, match="quantized=True"):
        VectorMemory(tmp_path, embedder=ChromaDefaultEmbeddings(), quantized=True)


async def test_vector_memory_quantized_uses_the_int8_embedder(tmp_path: Path) -> None:
    """`VectorMemory(quantized=True)` embeds with `ChromaDefaultEmbeddings(quantized=True)`."""
    memory = VectorMemory(tmp_path, quantized=True)
    try:
        assert memory.embedder.name == "chroma/all-MiniLM-L6-v2@int8"
    finally:
        await memory.aclose()
