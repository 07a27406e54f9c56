"""The int8 embedding model in `memweave models`: where it is cached, and building it.

`VectorMemory(quantized=True)` and `ChromaDefaultEmbeddings(quantized=True)` run an int8 copy
of all-MiniLM-L6-v2 that nothing downloads: it is built from the fp32 `model.onnx` on first use
(`memweave._onnx_int8.quantized_model`) and cached under a name holding the fp32 file's SHA-256
and the recipe. `int8_status` finds it without building it; `build_int8` builds it now, so a
machine can be made ready before it goes offline or read-only.
"""

from __future__ import annotations

from pathlib import Path

from memweave._models import (
    EMBEDDING_MODEL,
    ModelLocation,
    embedding_model_dir,
    int8_model_dir,
    sha256_of,
)
from memweave._onnx_int8 import INT8_RECIPE, quantized_model
from memweave.cli._common import CommandError
from memweave.errors import ConfigurationError, MissingDependency

__all__ = ["INT8_NAME", "build_int8", "int8_file", "int8_status"]

INT8_NAME = f"{EMBEDDING_MODEL} int8"
"""The int8 model's name in `memweave models`."""


def int8_file(folder: Path, fp32: Path) -> Path:
    """Where `quantized_model(fp32, folder)` caches the int8 copy of `fp32`."""
    return folder / f"{EMBEDDING_MODEL}-{sha256_of(fp32)[:16]}-{INT8_RECIPE}.onnx"


def int8_status(
    model_dir: Path | None, cache_dir: Path | None
) -> tuple[ModelLocation, Path, tuple[str, ...]]:
    """The int8 model's folder, the fp32 file it is built from, and what is missing: its file
    name (or, while the fp32 model is missing, a note that it cannot be named yet)."""
    location = int8_model_dir(cache_dir)
    fp32 = embedding_model_dir(model_dir).path / "model.onnx"
    if not fp32.is_file():
        return location, fp32, (f"(named by {fp32.name} of {EMBEDDING_MODEL}, itself missing)",)
    target = int8_file(location.path, fp32)
    return location, fp32, () if target.is_file() else (target.name,)


def build_int8(model_dir: Path | None, cache_dir: Path | None, *, force: bool) -> dict[str, str]:
    """Build the int8 copy of the fp32 model unless it is cached already (or `force`); return
    what `memweave models fetch` reports of it.

    Raises:
        CommandError: The fp32 model is missing, `onnx` is not installed, or the build failed.
    """
    location = int8_model_dir(cache_dir)
    fp32 = embedding_model_dir(model_dir).path / "model.onnx"
    if not fp32.is_file():
        raise CommandError(
            f"the int8 model is built from {fp32}, which is missing: fetch {EMBEDDING_MODEL} "
            "first (drop --only tiktoken)"
        )
    target = int8_file(location.path, fp32)
    if target.is_file():
        if not force:
            return {"model": INT8_NAME, "action": "present", "path": str(target)}
        target.unlink()
    try:
        built = quantized_model(fp32, location.path)
    except MissingDependency as exc:
        raise CommandError(f"building the int8 model needs onnx: {exc}") from exc
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc
    return {"model": INT8_NAME, "action": "built", "from": str(fp32), "path": str(built)}
