"""Embedding functions: the `EmbeddingFunction` protocol, Chroma's default model, and OpenAI's.

They sit beside `memweave.llm` at the bottom layer, so both the Chroma history backend and
`memweave.context` use them; `memweave.context.embeddings` is the same API under the name the
long-term memory docs use.

Vector memory calls `await embedder.embed(texts)` and records the embedder's `name` and
`dimensions` with its collection, so a store is never searched with vectors of another model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from memweave._onnx import MiniLMRunner
from memweave._openai import OpenAIModelClient
from memweave.errors import ConfigurationError, InvalidArgument, MissingDependency, ModelError

if TYPE_CHECKING:
    import openai

__all__ = ["ChromaDefaultEmbeddings", "EmbeddingFunction", "OpenAIEmbeddings"]

_T = TypeVar("_T")


@runtime_checkable
class EmbeddingFunction(Protocol):
    """Turns texts into vectors; bring your own to use another model.

    Implementations run blocking work off the event loop and raise `ModelError` when the
    model fails. Equal `name`s must mean interchangeable vectors: a store records the name
    and refuses an embedder with another.
    """

    @property
    def name(self) -> str:
        """Identifies the model (and its settings) that makes the vectors."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector `embed` returns."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one vector of `dimensions` floats per text, in order."""
        ...


def _check_count(name: str, value: object, *, optional: bool = False) -> None:
    """Raise `ConfigurationError` unless `value` is a positive int (or None if `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        kind = "a positive int or None" if optional else "a positive int"
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidArgument("texts", texts, "expected a sequence of str")
    batch = list(texts)
    for index, text in enumerate(batch):
        if not isinstance(text, str):
            raise InvalidArgument(f"texts[{index}]", text, "expected a str")
    return batch


class ChromaDefaultEmbeddings:
    """Chroma's default model, all-MiniLM-L6-v2 on onnxruntime, with less padding work.

    The vectors equal those of Chroma's stock `ONNXMiniLM_L6_V2` (384 floats, L2-normalised,
    inputs truncated at 256 tokens), but inputs are sorted by length and each batch is padded
    only to its own longest input instead of to 256 tokens, which makes ingesting short chat
    turns several times faster. The model runs in a worker thread, off the event loop.

    The six model files are read from the first of: `model_dir`, the folder named by
    `$MEMWEAVE_EMBEDDING_MODEL_DIR`, Chroma's cache
    (`~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx`). Only Chroma's cache is filled on
    first use, downloaded from Chroma's URL and checked against Chroma's checksum, exactly as
    Chroma itself would (never with `$MEMWEAVE_OFFLINE=1`). Offline, `memweave models fetch
    --from DIR` copies the files into place, and `memweave models` shows where they are
    looked for.

    Args:
        model_dir: A folder holding the model files; wins over the variable and the cache.
        batch_size: Most texts run through the model at once.
        threads: onnxruntime threads of each model run. When None, each run takes one
            thread and a call's batches run side by side, one per core (`workers`): on a few
            cores that embeds more per second than one run split over them.
        workers: Batches of one call run at once, at most one per core; one per available
            core when None and `threads` is None, else 1.
        quantized: Run an int8 copy of the model instead (opt-in): onnxruntime's dynamic
            quantization of the fp32 model, built on the first `embed` and cached in
            memweave's user cache (`$MEMWEAVE_CACHE_DIR`, else `~/.cache/memweave`, folder
            `onnx`; needs `pip install 'memweave[quantize]'`). Its vectors are close to the
            fp32 ones, not equal, so it is another embedder (`name` ends in `@int8`) and
            cannot share a collection with the fp32 one.
        cache_dir: The folder of the int8 copy, instead of memweave's user cache.

    Raises:
        MissingDependency: onnxruntime, tokenizers or numpy is missing
            (`pip install 'memweave[chroma]'`), or `onnx` with `quantized=True`
            (`pip install 'memweave[quantize]'`); raised at the first `embed`.
        ModelUnavailable: The model files are missing, incomplete or unreadable, and were not
            downloaded (the message names `memweave models` and the variables); raised at
            the first `embed`.

    Example:
        ```python
        embedder = ChromaDefaultEmbeddings()
        [vector] = await embedder.embed(["The cat sat on the mat."])
        assert len(vector) == embedder.dimensions == 384
        ```
    """

    name = "chroma/all-MiniLM-L6-v2"
    """Recorded with collections; equal to that of any embedder making the same vectors."""
    dimensions = 384
    """Length of every vector."""

    def __init__(
        self,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        workers: int | None = None,
        quantized: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(quantized, bool):
            raise ConfigurationError(f"quantized must be a bool, got {quantized!r}")
        _check_count("batch_size", batch_size)
        _check_count("threads", threads, optional=True)
        _check_count("workers", workers, optional=True)
        self._runner = MiniLMRunner(
            model_dir,
            batch_size=batch_size,
            threads=threads,
            workers=workers,
            quantized=quantized,
            cache_dir=cache_dir,
        )
        self.quantized = quantized
        if quantized:
            self.name = f"{ChromaDefaultEmbeddings.name}@int8"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed `texts` in a worker thread; an empty sequence returns `[]`.

        Raises:
            InvalidArgument: `texts` is not a sequence of str.
            ModelError: onnxruntime failed.
        """
        batch = _check_texts(texts)
        if not batch:
            return []
        return await asyncio.to_thread(self._embed_blocking, batch)

    async def embed_parts(
        self, parts: Sequence[Sequence[str]]
    ) -> AsyncGenerator[list[list[float]], None]:
        """Embed several lists of texts as one stream of model runs, yielding each part's
        vectors, in order, as soon as it is embedded.

        The same vectors as one `embed` per part, but the next part's batches start as soon as
        a core is free instead of after the slowest batch of the part before, so a caller that
        stores each part while the next one embeds keeps every core busy. Closing the iterator
        early (use `contextlib.aclosing`) stops the model runs not yet begun.

        Raises:
            InvalidArgument: a part is not a sequence of str.
            ModelError: onnxruntime failed; the parts yielded before stay valid.
        """
        batches = [_check_texts(part) for part in parts]
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[list[list[float]] | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(item: list[list[float]] | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(ready.put_nowait, item)

        def work() -> None:
            try:
                self._blocking(self._runner.embed_parts, batches, hand_over, stop)
            except BaseException as exc:
                hand_over(exc)

        running = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            for _ in batches:
                item = await ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # The thread ends after the run it is in; its outcome was handed over already.
            # A cancellation of this wait propagates (the thread still stops on its own).
            await asyncio.wait({running})

    def runs_started(self) -> int:
        """How many model runs have begun so far: a mark for `wait_until_running`."""
        return self._runner.runs_started()

    def wait_until_running(self, since: int | None, timeout: float) -> None:
        """Block (a worker thread, never the event loop) until the model runs begun after
        mark `since` (any runs, when None) are under way on every core they can use, or
        `timeout` seconds pass.

        For a thread about to hold the GIL for long, as a Chroma insert does: it waits
        here so that the model, which runs without the GIL, is busy meanwhile."""
        self._runner.wait_until_running(since, timeout)

    def _embed_blocking(self, texts: list[str]) -> list[list[float]]:
        return self._blocking(self._runner.embed, texts)

    def _blocking(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a model call of the runner, its failures raised as `ModelError`."""
        try:
            return call(*args)
        except (ConfigurationError, MissingDependency):
            raise
        except Exception as exc:
            # onnxruntime raises its own classes (and RuntimeError); anything from the model
            # run is a model failure to the caller.
            raise ModelError(f"embedding with {self.name!r} failed: {exc}") from exc

    def __repr__(self) -> str:
        return f"ChromaDefaultEmbeddings(model_dir={str(self._runner.model_dir)!r})"


_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_SHORTENABLE = ("text-embedding-3-",)


class OpenAIEmbeddings(OpenAIModelClient):
    """Embeddings from OpenAI or any OpenAI-compatible `/embeddings` server, on the `openai` SDK.

    Texts go out in batches of `batch_size` per request, and the vectors come back in input
    order. A client built here is closed by `aclose()`; one passed in is left open.

    Args:
        model: The embedding model, e.g. `"text-embedding-3-small"`.
        client: An `openai.AsyncOpenAI` to use instead of building one.
        base_url: The server's base URL (e.g. `"http://localhost:11434/v1"`); only without
            `client`.
        api_key: The API key; only without `client`. Defaults to `OPENAI_API_KEY`.
        dimensions: Vector length. Required for models this class does not know; for the
            `text-embedding-3-*` models a smaller value asks the server for shortened vectors.
        batch_size: Most texts per request (OpenAI accepts up to 2048).

    Raises:
        MissingDependency: `openai` is not installed (`pip install 'memweave[openai]'`).
        ConfigurationError: Bad options, an unknown model without `dimensions`, or no API key.

    Example:
        ```python
        embedder = OpenAIEmbeddings("nomic-embed-text", base_url="http://localhost:11434/v1",
                                    api_key="unused", dimensions=768)
        ```
    """

    _server = "embedding server"
    _failed_call = "embedding with"

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty str, got {model!r}")
        _check_count("batch_size", batch_size)
        known = _OPENAI_DIMENSIONS.get(model)
        if dimensions is None:
            if known is None:
                raise ConfigurationError(
                    f"embedding model {model!r} is not one memweave knows; pass dimensions= "
                    "(the length of its vectors)"
                )
            dimensions = known
        elif isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise ConfigurationError(f"dimensions must be a positive int, got {dimensions!r}")
        super().__init__(model, client=client, base_url=base_url, api_key=api_key)
        self._dimensions = dimensions
        # Only the text-embedding-3 family accepts `dimensions`; other servers reject it.
        self._send_dimensions = model.startswith(_SHORTENABLE) and dimensions != known
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """`openai/<model>`, plus `@<dimensions>` for shortened vectors."""
        suffix = f"@{self._dimensions}" if self._send_dimensions else ""
        return f"openai/{self.model}{suffix}"

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed `texts`, `batch_size` per request; an empty sequence makes no request.

        Empty strings are sent as a single space, since the API rejects empty input.

        Raises:
            InvalidArgument: `texts` is not a sequence of str.
            ModelHTTPError: The server answered with an error status.
            ModelError: The server could not be reached, or answered with the wrong number or
                length of vectors.
        """
        batch = [text or " " for text in _check_texts(texts)]
        out: list[list[float]] = []
        for start in range(0, len(batch), self.batch_size):
            out.extend(await self._embed_batch(batch[start : start + self.batch_size]))
        return out

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        request: dict[str, Any] = {"model": self.model, "input": texts}
        if self._send_dimensions:
            request["dimensions"] = self._dimensions
        with self._map_errors():
            response = await self._client.embeddings.create(**request)
        items = sorted(response.data, key=lambda item: item.index)
        if len(items) != len(texts):
            raise ModelError(
                f"model {self.model!r} returned {len(items)} vectors for {len(texts)} texts"
            )
        vectors = [list(item.embedding) for item in items]
        for vector in vectors:
            if len(vector) != self._dimensions:
                raise ModelError(
                    f"model {self.model!r} returned a vector of {len(vector)} floats; "
                    f"dimensions={self._dimensions} was expected"
                )
        return vectors
