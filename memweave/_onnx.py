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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from memweave._models import (
    MINILM_FILES,
    chroma_model_dir,
    embedding_model_dir,
    ensure_embedding_model,
    model_hint,
)
from memweave._onnx_int8 import quantized_model
from memweave.errors import MissingDependency, ModelUnavailable

__all__ = ["MODEL_FILES", "MiniLMRunner", "available_cores", "default_model_dir"]

MODEL_FILES = MINILM_FILES
"""The files Chroma's download leaves in the model folder; all six mean "present"."""

MAX_TOKENS = 256
"""Chroma (and sentence-transformers) truncate inputs of this model to 256 tokens."""

_T = TypeVar("_T")

LENGTH_RATIO = 1.3
"""A batch takes inputs up to this many times the length of its shortest one."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    """The threads that help callers run their batches, one fewer than the cores, shared by
    every runner of the process (a caller runs batches too, so it never waits for one)."""
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(
                max(1, available_cores() - 1), thread_name_prefix="memweave-onnx"
            )
        return _helpers


def default_model_dir() -> Path:
    """Where Chroma keeps its default model: `~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx`."""
    return chroma_model_dir()


class MiniLMRunner:
    """Tokenizer plus onnxruntime session for all-MiniLM-L6-v2; thread-safe, loaded lazily.

    Args:
        model_dir: Folder holding the six model files; when None, `$MEMWEAVE_EMBEDDING_MODEL_DIR`,
            else Chroma's cache folder (see `memweave._models.embedding_model_dir`).
        batch_size: Most inputs run through the model at once.
        threads: onnxruntime intra-op threads of each model run. When None, each run takes
            one thread and a call's batches run side by side on `workers` threads, which on
            a few cores embeds more per second than one run split over them (no thread waits
            at every operator for the slowest of the others) and shares the cores better
            with the store's writes.
        workers: Batches of one call run at once (at most one per core); `available_cores()`
            when None and `threads` is None, else 1.
        download: Download the model into Chroma's cache folder when that is the folder and
            it is missing (never with `$MEMWEAVE_OFFLINE` set), from Chroma's URL, checked.
        quantized: Run the int8 copy of the model, built from it and cached on first use
            (`memweave._onnx_int8.quantized_model`); its vectors are close to, not equal to,
            the fp32 ones.
        cache_dir: The folder of the int8 copy; memweave's user cache when None.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        workers: int | None = None,
        download: bool = True,
        quantized: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.location = embedding_model_dir(model_dir)
        self.quantized = quantized
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.model_dir = self.location.path
        self.batch_size = batch_size
        self.threads = threads
        cores = available_cores()
        if workers is None:
            workers = cores if threads is None else 1
        self.workers = max(1, min(workers, cores))
        self.download = download
        self._lock = threading.Lock()
        # Model runs: entered so far, in progress, and batches waiting for a worker.
        self._runs = threading.Condition()
        self._started = 0
        self._in_model = 0
        self._queued = 0
        self._tokenizer: Any = None
        self._session: Any = None
        self._np: Any = None

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
            ensure_embedding_model(self.location, download=self.download)
            model = self.model_dir / "model.onnx"
            if self.quantized:
                model = quantized_model(model, self.cache_dir)
            try:
                tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                session = self._session_of(ort, model)
            except Exception as exc:
                # tokenizers raises bare Exceptions and onnxruntime its own classes: either
                # way the files are there but unreadable (truncated copy, another model).
                raise ModelUnavailable(
                    "all-MiniLM-L6-v2",
                    str(self.model_dir),
                    f"the model files could not be read ({type(exc).__name__}: {exc}); "
                    f"{model_hint('embedding')}",
                ) from exc
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            self._np = np
            self._tokenizer = tokenizer
            self._session = session

    def _session_of(self, ort: Any, model: Path) -> Any:
        """An onnxruntime session on the ONNX file `model`."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: a spinning thread would hold a
        # core the storage write that follows each batch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = self.threads if self.threads is not None else 1
        return ort.InferenceSession(
            str(model),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts` (blocking); one L2-normalised 384-float vector per text, in order."""
        out: list[list[list[float]]] = []
        self.embed_parts([texts], out.append)
        return out[0]

    def embed_parts(
        self,
        parts: Sequence[list[str]],
        deliver: Callable[[list[list[float]]], None],
        stop: threading.Event | None = None,
    ) -> None:
        """Embed several lists of texts as one stream of model runs (blocking), handing each
        part's vectors to `deliver` as soon as that part and every part before it are done.

        Each part is cut into batches of its own texts, queued after the batches of the parts
        before it, so no worker waits at the end of a part for the others: a caller that
        stores part n while part n + 1 embeds keeps every core busy. `deliver` is called in
        part order, once per part, on whichever thread finished the part. Once `stop` is set,
        no further batch starts and the parts not delivered yet are dropped.
        """
        texts = [text for part in parts for text in part]
        if texts and self._session is None:
            self._load()
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True) if texts else []
        lengths = [len(encoding.ids) for encoding in encodings]
        out: list[Any] = [None] * len(texts)
        bounds: list[tuple[int, int]] = []
        queue: list[tuple[int, list[int]]] = []
        unfinished: list[int] = []
        for number, part in enumerate(parts):
            start = bounds[-1][1] if bounds else 0
            bounds.append((start, start + len(part)))
            order = sorted(range(start, start + len(part)), key=lambda i: lengths[i])
            # At most a worker's share of the part per batch, so a part of fewer texts than
            # `workers * batch_size` (the last, say) still runs on every core.
            size = min(self.batch_size, -(-len(part) // self.workers))
            batches = self._batches(order, lengths, size)
            # Costliest first, so the runs side by side end close together.
            batches.sort(key=lambda chunk: -len(chunk) * max(lengths[i] for i in chunk))
            queue += [(number, chunk) for chunk in batches]
            unfinished.append(len(batches))
        delivered = [0]
        ordered = threading.Lock()

        def deliver_ready() -> None:
            with ordered:
                while delivered[0] < len(parts) and unfinished[delivered[0]] == 0:
                    start, end = bounds[delivered[0]]
                    delivered[0] += 1
                    deliver([vector.tolist() for vector in out[start:end]])

        left = [len(queue)]  # not taken by a worker yet

        def take(entry: tuple[int, list[int]]) -> None:
            with self._runs:
                self._queued -= 1
                left[0] -= 1
            number, chunk = entry
            self._embed_batch(chunk, encodings, out)
            with ordered:
                unfinished[number] -= 1
            deliver_ready()

        with self._runs:
            self._queued += len(queue)
        try:
            deliver_ready()  # empty parts at the front
            self._run_all(queue, take, stop)
        finally:
            with self._runs:
                self._queued -= left[0]  # batches a failure or a stop left untaken
                self._runs.notify_all()

    def runs_started(self) -> int:
        """How many model runs have begun so far (a mark for `wait_until_running`)."""
        with self._runs:
            return self._started

    def wait_until_running(self, since: int | None, timeout: float) -> None:
        """Block until a run has begun after mark `since` (any run, when None) and every
        worker with a batch left is inside the model (or nothing is left to run), or `timeout`
        seconds pass.

        A thread about to hold the GIL for long (a Chroma insert holds it throughout) waits
        here, so that the model runs, which release the GIL, are under way meanwhile."""
        with self._runs:
            self._runs.wait_for(
                lambda: (
                    (since is None or self._started > since)
                    and self._in_model >= min(self.workers, self._in_model + self._queued)
                ),
                timeout,
            )

    def _run_all(
        self, batches: list[_T], run: Callable[[_T], None], stop: threading.Event | None = None
    ) -> None:
        """Run `run` on every batch, in order: on this thread alone, or with up to
        `workers - 1` helper threads taking batches from the same queue; none starts once
        `stop` (a `threading.Event`) is set."""
        helpers = min(self.workers, len(batches)) - 1
        stopped = stop.is_set if stop is not None else lambda: False
        if helpers <= 0:
            for chunk in batches:
                if stopped():
                    return
                run(chunk)
            return
        queue: Iterator[_T] = iter(batches)
        taking = threading.Lock()
        failed: list[BaseException] = []

        def drain() -> None:
            while not failed and not stopped():
                with taking:
                    chunk = next(queue, None)
                if chunk is None:
                    return
                try:
                    run(chunk)
                except BaseException as exc:
                    failed.append(exc)
                    raise

        pool = _helper_pool()
        started = [pool.submit(drain) for _ in range(helpers)]
        try:
            drain()
        finally:
            for future in started:
                future.exception()  # wait; a failure is in `failed`
        if failed:
            raise failed[0]

    def _embed_batch(self, chunk: list[int], encodings: list[Any], out: list[Any]) -> None:
        """Run one batch through the model and put its vectors at their places in `out`."""
        np = self._np
        width = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, index in enumerate(chunk):
            tokens = encodings[index].ids
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._runs:
            self._started += 1
            self._in_model += 1
            self._runs.notify_all()
        try:
            hidden = self._session.run(None, feeds)[0]
        finally:
            with self._runs:
                self._in_model -= 1
                self._runs.notify_all()
        # Same operations and dtypes as Chroma's _forward (float32 x int64 -> float64), so
        # the pooled vectors round the same way.
        expanded = np.broadcast_to(np.expand_dims(mask, -1), hidden.shape)
        pooled = np.sum(hidden * expanded, 1) / np.clip(expanded.sum(1), 1e-9, None)
        norm = np.linalg.norm(pooled, axis=1)
        norm[norm == 0] = 1e-12
        vectors = (pooled / norm[:, np.newaxis]).astype(np.float32)
        for row, index in enumerate(chunk):
            out[index] = vectors[row]

    def _batches(self, order: list[int], lengths: list[int], size: int) -> list[list[int]]:
        """Cut `order` (indices sorted by length) into batches of similar length, at most
        `size` each."""
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            if current and (
                len(current) >= size or lengths[index] > LENGTH_RATIO * lengths[current[0]]
            ):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches
