"""The opt-in int8 copy of all-MiniLM-L6-v2: built by onnxruntime's dynamic quantization,
cached on first use.

`quantized_model(model)` returns the int8 copy of an fp32 ONNX file: onnxruntime's
`quantize_dynamic` with int8 weights per output channel (activations are quantized at run
time), which keeps the vectors within about 0.01 cosine of the fp32 ones on chat turns while
the matrix products run on int8. The copy is cached in memweave's user cache
(`memweave._models.memweave_cache_dir() / "onnx"`), named by the fp32 file's SHA-256 and the
recipe, and written atomically: quantized into a temporary file of that folder, then renamed
into place. A reader never sees half a file, and processes building it at the same time each
write a whole one (the last rename wins; they are equal).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memweave._models import memweave_cache_dir, sha256_of
from memweave.errors import ConfigurationError, MissingDependency

__all__ = ["INT8_RECIPE", "int8_cache_dir", "quantized_model"]

INT8_RECIPE = "dynamic-qint8-per-channel-v1"
"""Names how the int8 model is made; part of its cache key, changed with the recipe."""


def int8_cache_dir() -> Path:
    """Where int8 models are cached: the `onnx` folder of memweave's user cache."""
    return memweave_cache_dir() / "onnx"


class _DropQuantizerAdvice(logging.Filter):
    """onnxruntime's quantizer logs advice on the root logger ("consider pre-processing")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    advice = _DropQuantizerAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantized_model(model: Path, cache_dir: Path | None = None) -> Path:
    """The int8 copy of the fp32 ONNX file `model`, built and cached on first use.

    Args:
        model: The fp32 `model.onnx`.
        cache_dir: The folder of the copy; `int8_cache_dir()` when None.

    Raises:
        MissingDependency: The `onnx` package (onnxruntime's quantizer needs it) is missing
            (`pip install 'memweave[quantize]'`).
        ConfigurationError: The cache folder cannot be written, or quantization failed.
    """
    folder = cache_dir if cache_dir is not None else int8_cache_dir()
    target = folder / f"all-MiniLM-L6-v2-{sha256_of(model)[:16]}-{INT8_RECIPE}.onnx"
    if target.is_file():
        return target
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingDependency(exc.name or "onnx", "quantize") from exc
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".building-", suffix=".onnx", dir=folder)
        os.close(handle)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the int8 model cache {str(folder)!r}: {exc}"
        ) from exc
    try:
        # Given a path, the quantizer writes a shape-inferred copy beside the input (a race
        # between processes, and a failure in a read-only model folder); given the loaded
        # model, it works in a private temporary folder.
        fp32 = onnx.load(str(model))
        with _quiet_quantizer():
            quantize_dynamic(fp32, temporary, per_channel=True, weight_type=QuantType.QInt8)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is readable
        os.replace(temporary, target)
    except Exception as exc:
        # onnx and onnxruntime raise classes of their own; any of them means "not built".
        raise ConfigurationError(f"quantizing {str(model)!r} to int8 failed: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target
