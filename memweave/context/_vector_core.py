"""The plumbing of `VectorMemory`: its options, the one worker thread every Chroma and SQLite
call runs on, opening the stores on first use, batched adds, and closing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from memweave._deprecation import renamed_argument
from memweave._group_commit import GroupCommit
from memweave._loops import PerLoop
from memweave.context._facts_engine import FactStore
from memweave.context._facts_queue import ExtractionQueue
from memweave.context._fusion import FusionWeights
from memweave.context._render import CountsTextTokens, default_token_counter
from memweave.context._vector_parts import (
    RetrievalMode,
    check_fusion,
    check_options,
    check_setup,
    client_factory,
    map_errors,
    memory_names,
    open_index,
    quantized_embedder,
)
from memweave.context._vector_writes import Add, AddResult, write_batch
from memweave.context.base import ContextProvider
from memweave.context.embeddings import EmbeddingFunction
from memweave.context.facts import FactExtractor, MemoryKind
from memweave.errors import MissingDependency, ProviderClosed

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex

__all__ = ["VectorCore"]

_MAX_BATCH = 1024  # adds per batch; written WRITE_CHUNK at a time, embedding overlapping writes
_T = TypeVar("_T")


class VectorCore(ContextProvider):
    """What `VectorMemory` is built on: its options, worker thread, stores and closing. See
    `VectorMemory` for the arguments; this class is not used on its own."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        client: Any = None,
        namespace: str | None = None,
        embedder: EmbeddingFunction | None = None,
        lexical_path: str | os.PathLike[str] | None = None,
        mode: RetrievalMode = "hybrid",
        k: int = 5,
        min_score: float = 0.26,
        max_memory_tokens: int = 1000,
        token_counter: CountsTextTokens | None = None,
        context_window: int = 2,
        extractor: FactExtractor | None = None,
        inject_kind: MemoryKind | None = None,
        fusion: FusionWeights | None = None,
        quantized: bool = False,
        collection: str | None = None,
    ) -> None:
        renamed_argument("VectorMemory", "collection", collection, "namespace", namespace)
        namespace, collection = memory_names(namespace, collection)
        try:
            import chromadb  # noqa: F401 - only checks that the extra is installed
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        embedder = quantized_embedder(embedder, quantized)
        embedder = check_setup(embedder, extractor, inject_kind)
        check_options(mode, k, min_score, max_memory_tokens, context_window)
        self.fusion = check_fusion(fusion)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if client is None and path is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="memweave-memory-")
            path = self._tempdir.name
        self._make_client, lexical_path = client_factory(
            path, client, collection, lexical_path, private=self._tempdir is not None
        )
        self.namespace = namespace
        """The name this memory's data lives under (see `VectorMemory`)."""
        self.collection_name = collection
        """Its Chroma collection: `<namespace>_memory` (a deprecated `collection` as given)."""
        self.embedder = embedder
        self.lexical_path = str(lexical_path)
        self.mode: RetrievalMode = mode
        self.k = k
        self.min_score = float(min_score)
        self.max_memory_tokens = max_memory_tokens
        self._token_counter = token_counter
        self.context_window = context_window
        self.extractor = extractor
        self.inject_kind: MemoryKind | None = inject_kind
        self._index: HybridIndex | None = None
        self._client: Any = None
        self._open_lock = PerLoop(asyncio.Lock)
        # One thread does every Chroma and SQLite call, in submission order: a search queued
        # after a write sees it, and the SQLite connection is never shared between threads.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memweave")
        self._adds: GroupCommit[Add, AddResult] = GroupCommit(self._write, max_batch=_MAX_BATCH)
        self._closed = False
        self._facts = FactStore(
            extractor,
            run=self._run,
            open_index=self._open,
            client=lambda: self._client,
            collection=collection,
            embedder=embedder,
        )
        self._queue: ExtractionQueue | None = self._facts.background_queue()

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        with map_errors(self.lexical_path):
            return await loop.run_in_executor(self._worker, function, *args)

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ProviderClosed(type(self).__name__, method)

    async def _open(self, method: str) -> HybridIndex:
        # Checked again here: the memory may have been closed while the call waited.
        self._check_open(method)
        if self._index is not None:
            return self._index
        async with self._open_lock.get():
            if self._index is None:
                return await self._run(self._open_once)
        return self._index

    def _open_once(self) -> HybridIndex:
        # On the worker: a loop that waited for another loop's open finds it done here.
        if self._index is None:
            self._index, self._client = open_index(
                self._make_client,
                self.collection_name,
                self.embedder,
                self.lexical_path,
                self.context_window,
                self.fusion,
            )
        return self._index

    @property
    def token_counter(self) -> CountsTextTokens:
        """The counter that budgets `invoking`'s instructions."""
        if self._token_counter is None:
            self._token_counter = default_token_counter()
        return self._token_counter

    async def _write(self, adds: list[Add]) -> list[AddResult]:
        index = await self._open("add")
        return await write_batch(adds, index=index, embedder=self.embedder, run=self._run)

    async def _flush(self) -> None:
        """Wait until every add queued so far is written."""
        await self._adds.flush()

    async def aclose(self) -> None:
        """Finish queued writes and background extraction (every event loop's), and close the
        catalogue. Idempotent; a `client=` passed in is left open. An ephemeral memory (no
        `path`, no `client`) is deleted. Any other method called afterwards raises
        `ProviderClosed`."""
        if self._closed:
            return
        try:
            if self._queue is not None:
                await self._queue.aclose()
            await self._flush()
        finally:
            self._closed = True
            index, self._index = self._index, None
            if index is not None:
                await asyncio.get_running_loop().run_in_executor(self._worker, index.close)
            self._worker.shutdown(wait=True)
            if self._tempdir is not None:
                self._tempdir.cleanup()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._closed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self.namespace!r}, "
            f"collection={self.collection_name!r}, "
            f"embedder={self.embedder.name!r}, mode={self.mode!r})"
        )
