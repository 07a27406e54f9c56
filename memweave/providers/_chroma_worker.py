"""What a Chroma history runs on: one worker thread making every Chroma call, in order (the
provider's own writes never interleave, and Chroma's blocking client stays off the event
loop), the client and collection it opens on first use, and the time limit on each call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from memweave._loops import PerLoop
from memweave.embeddings import ChromaDefaultEmbeddings, EmbeddingFunction
from memweave.errors import BackendTimeout
from memweave.providers._chroma_client import ClientMaker, map_chroma_errors, max_batch_of
from memweave.providers._chroma_collection import blank_vector, mark_layout, open_collection
from memweave.providers._chroma_history_ops import HistoryOps
from memweave.providers.base import ChatHistoryProvider

__all__ = ["ChromaWorker"]

_T = TypeVar("_T")


class ChromaWorker(ChatHistoryProvider):
    """The plumbing of `ChromaChatHistoryProvider`: `_run(function, *args)` runs
    `function(collection, *args)` on the worker, opening the collection first if needed,
    and holds it to `timeout` (a call cut off goes on in the worker, and later calls queue
    behind it). A subclass sets `_url`, `collection_name` and `_ops`, then calls
    `_start_worker`."""

    _timeout_scope = "backend"  # `_bounded` holds each worker call to `timeout`

    collection_name: str
    """The collection holding the histories."""
    _ops: HistoryOps
    """The blocking operations on the collection (set by the subclass); told the client's
    batch limit when the client opens."""

    def _start_worker(self, make_client: ClientMaker, embedder: EmbeddingFunction | None) -> None:
        """Get ready to open the client `make_client` makes, on first use."""
        self._make_client = make_client
        self._embedder = embedder
        self._collection: Any = None
        self._client: Any = None
        self._legacy = False
        """Whether an older memweave made the collection (see `open_collection`)."""
        self._close_client: Callable[[], None] | None = None
        self._open_lock = PerLoop(asyncio.Lock)
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memweave")

    @property
    def embedder(self) -> EmbeddingFunction:
        """The embedding function of this provider's vectors."""
        if self._embedder is None:
            self._embedder = ChromaDefaultEmbeddings()
        return self._embedder

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        collection = await self._ready()
        loop = asyncio.get_running_loop()
        return await self._bounded(loop.run_in_executor(self._worker, function, collection, *args))

    async def _ready(self) -> Any:
        if self._collection is None:
            async with self._open_lock.get():
                if self._collection is None:
                    embedder = self.embedder
                    loop = asyncio.get_running_loop()
                    name, dimensions = embedder.name, embedder.dimensions
                    await self._bounded(
                        loop.run_in_executor(self._worker, self._open, name, dimensions)
                    )
        return self._collection

    async def _bounded(self, call: Awaitable[_T]) -> _T:
        """Wait for a worker call at most `timeout` seconds (it goes on in the worker)."""
        if self.timeout is None:
            return await call
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            raise BackendTimeout("a Chroma call", self.timeout, url=self._url) from None

    def _open(self, embedder: str, dimensions: int) -> None:
        # On the worker: a loop that waited for another loop's open finds it done here.
        if self._collection is None:
            self._collection = self._open_client(embedder, dimensions)

    def _open_client(self, embedder: str, dimensions: int) -> Any:
        client, self._close_client = self._make_client()
        self._client = client
        try:
            collection, self._legacy = open_collection(
                client, self.collection_name, embedder, dimensions
            )
            self._ops.max_batch = max_batch_of(client)
        except BaseException:
            self._release_client()
            raise
        return collection

    def _release_client(self) -> None:
        close, self._close_client = self._close_client, None
        if close is not None:
            close()

    def _mark_layout(self, collection: Any) -> None:
        """Record that no session record lacks the listing fields any more."""
        mark_layout(collection)
        self._legacy = False

    def _map_errors(self) -> contextlib.AbstractContextManager[None]:
        """Translate Chroma's and httpx's errors, marking those a retry may cure."""
        return map_chroma_errors(self._url, timeout=self.timeout)

    def _blank(self) -> list[float]:
        """The vector of a record with no text: a fixed unit vector."""
        return blank_vector(self.embedder.dimensions)
