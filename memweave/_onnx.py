"""Chroma's all-MiniLM-L6-v2 on onnxruntime, batched by length instead of padded to 256 tokens.

Chroma's stock `ONNXMiniLM_L6_V2` pads every input to 256 tokens, so a ten-word turn costs as
much as a page. Here inputs are sorted by token count and cut into batches of similar length
(a batch ends when full, or when the next input is 30% longer than its first), each padded only
to its own longest input. Padded positions are masked out of attention and of the mean pooling,
so the vectors are the stock ones (to float rounding); pooling and normalisation follow the
stock arithmetic step by step (in float64) so they agree to well under 1e-6.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from memweave.errors import ConfigurationError, MissingDependency

__all__ = ["MODEL_FILES", "MiniLMRunner", "default_model_dir"]

MODEL_FILES = (
    "config.json",
    "model.onnx",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
"""The files Chroma's download leaves in the model folder; all six mean "present"."""

MAX_TOKENS = 256
"""Chroma (and sentence-transformers) truncate inputs of this model to 256 tokens."""

LENGTH_RATIO = 1.3
"""A batch takes inputs up to this many times the length of its shortest one."""


def default_model_dir() -> Path:
    """Where Chroma keeps its default model: `~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx`."""
    return Path.home() / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"


def _download_with_chroma() -> None:
    """Let chromadb fetch the model into its cache, exactly as its own default function would."""
    try:
        from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2
    except ImportError as exc:
        raise MissingDependency("chromadb", "chroma") from exc
    # The download helper is private in chromadb, but it is the one place that knows the
    # archive's URL and checksum; reusing it keeps our cache and Chroma's identical.
    ONNXMiniLM_L6_V2()._download_model_if_not_exists()


class MiniLMRunner:
    """Tokenizer plus onnxruntime session for all-MiniLM-L6-v2; thread-safe, loaded lazily.

    Args:
        model_dir: Folder holding the six model files; Chroma's cache folder when None.
        batch_size: Most inputs run through the model at once.
        threads: onnxruntime intra-op threads; onnxruntime's default (all cores) when None.
        download: Let chromadb download the model when `model_dir` is None and it is missing.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        download: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self._use_default_dir = model_dir is None
        self.batch_size = batch_size
        self.threads = threads
        self.download = download
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._session: Any = None
        self._np: Any = None

    def _missing(self) -> list[str]:
        return [name for name in MODEL_FILES if not (self.model_dir / name).is_file()]

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import numpy as np
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise MissingDependency(exc.name or "onnxruntime", "chroma") from exc
            if self._missing() and self._use_default_dir and self.download:
                _download_with_chroma()
            missing = self._missing()
            if missing:
                raise ConfigurationError(
                    f"the all-MiniLM-L6-v2 model is incomplete in {str(self.model_dir)!r}: "
                    f"missing {missing}"
                )
            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Idle worker threads sleep instead of spinning: a spinning thread would hold a
            # core the storage write that follows each batch needs.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.threads is not None:
                options.intra_op_num_threads = self.threads
            session = ort.InferenceSession(
                str(self.model_dir / "model.onnx"),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            self._np = np
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts` (blocking); one L2-normalised 384-float vector per text, in order."""
        if not texts:
            return []
        if self._session is None:
            self._load()
        np = self._np
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out: list[Any] = [None] * len(texts)
        for chunk in self._batches(order, [len(encoding.ids) for encoding in encodings]):
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            # Same operations and dtypes as Chroma's _forward (float32 x int64 -> float64), so
            # the pooled vectors round the same way.
            expanded = np.broadcast_to(np.expand_dims(mask, -1), hidden.shape)
            pooled = np.sum(hidden * expanded, 1) / np.clip(expanded.sum(1), 1e-9, None)
            norm = np.linalg.norm(pooled, axis=1)
            norm[norm == 0] = 1e-12
            vectors = (pooled / norm[:, np.newaxis]).astype(np.float32)
            for row, index in enumerate(chunk):
                out[index] = vectors[row]
        return [vector.tolist() for vector in out]

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Cut `order` (indices sorted by length) into batches of similar length."""
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            if current and (
                len(current) >= self.batch_size
                or lengths[index] > LENGTH_RATIO * lengths[current[0]]
            ):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches
