"""Test setup shared by every suite: offline model data, and the service-availability rule."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

if (SHARED / "tiktoken").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))

_CHROMA_MODELS = SHARED / "models" / "chroma" / "onnx_models"
_MODEL_DIR = _CHROMA_MODELS / "all-MiniLM-L6-v2" / "onnx"
if (_MODEL_DIR / "model.onnx").is_file():
    # memweave (ChromaDefaultEmbeddings, VectorMemory) loads the model from here, as `make`
    # points it; tests of the variable's own rules unset it themselves.
    os.environ.setdefault("MEMWEAVE_EMBEDDING_MODEL_DIR", str(_MODEL_DIR))

# chromadb's own embedding function, which tests compare memweave's vectors with, reads only
# Chroma's cache: seed it, keeping files already there (`cp -rn`).
if _CHROMA_MODELS.is_dir():
    _cache = Path.home() / ".cache" / "chroma" / "onnx_models"
    for source in _CHROMA_MODELS.rglob("*"):
        target = _cache / source.relative_to(_CHROMA_MODELS)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

# Wall-clock limits make property tests flaky on a loaded 2-core machine and test nothing about
# memweave; speed is the benchmarks' job.
settings.register_profile("memweave", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "memweave"))

REQUIRE_SERVICES = os.environ.get("MEMWEAVE_REQUIRE_SERVICES") == "1"


def service_unavailable(what: str, reason: str) -> None:
    """Skip the test because `what` is unreachable, or fail under MEMWEAVE_REQUIRE_SERVICES=1."""
    message = f"{what} is unreachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (MEMWEAVE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)
