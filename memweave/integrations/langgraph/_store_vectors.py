"""The dense side of `MemweaveStore` search: the embedder and the Chroma collection of vectors.

Vectors are kept per item *version*: each put gives an item a new version, and a vector
counts only while its version is the item's current one. So a vector left behind by a crash,
an item that expired, or another process's overwrite can never score an item it no longer
describes; a search embeds (and stores) whatever current vectors are missing instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from memweave.embeddings import EmbeddingFunction
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    MemweaveError,
    MissingDependency,
    ModelError,
)

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - needs an environment without numpy
    raise MissingDependency("numpy", "chroma") from exc

from memweave.context._fusion import Vector, unit

__all__ = ["StoreEmbedder", "VectorIndex", "make_embedder"]

_T = TypeVar("_T")
_CHUNK = 256


class StoreEmbedder:
    """One interface over a memweave `EmbeddingFunction` and LangGraph's `embed` forms (a
    LangChain `Embeddings`, a sync or async function of a list of texts, a provider string).

    Args:
        embed: The embedder.
        dims: The vector length the caller declared (`IndexConfig["dims"]`).

    Raises:
        ConfigurationError: `dims` is not a positive int, or differs from a memweave
            embedder's own `dimensions`.
    """

    def __init__(self, embed: Any, dims: object) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ConfigurationError(f'index["dims"] must be a positive int, got {dims!r}')
        self.dimensions = dims
        self._memweave: EmbeddingFunction | None = None
        self._langchain: Any = None
        if isinstance(embed, EmbeddingFunction):
            if embed.dimensions != dims:
                raise ConfigurationError(
                    f'index["dims"] is {dims}, but the embedder {embed.name!r} makes vectors '
                    f"of {embed.dimensions}"
                )
            self._memweave = embed
            self.name: str = embed.name
        else:
            from langgraph.store.base import ensure_embeddings

            try:
                self._langchain = ensure_embeddings(embed)
            except (ValueError, TypeError, ImportError) as exc:
                raise ConfigurationError(f'index["embed"] cannot be used: {exc}') from exc
            model = getattr(self._langchain, "model", None) or getattr(
                self._langchain, "model_name", None
            )
            kind = type(self._langchain)
            base = embed if isinstance(embed, str) else f"{kind.__module__}.{kind.__qualname__}"
            self.name = f"langchain/{base}" + (f"/{model}" if isinstance(model, str) else "")

    async def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        """Unit vectors of `texts`, in order.

        Raises:
            ModelError: The embedder failed or returned vectors of the wrong shape.
        """
        if not texts:
            return []
        try:
            if self._memweave is not None:
                raw = await self._memweave.embed(list(texts))
            else:
                raw = await self._langchain.aembed_documents(list(texts))
        except MemweaveError:
            raise
        except Exception as exc:  # the user's embedder: any failure is a model failure
            raise ModelError(f"the store's embedder {self.name!r} failed: {exc}") from exc
        if len(raw) != len(texts):
            raise ModelError(
                f"the store's embedder {self.name!r} returned {len(raw)} vectors for "
                f"{len(texts)} texts"
            )
        out = [unit(vector) for vector in raw]
        for vector in out:
            if vector.shape != (self.dimensions,):
                raise ModelError(
                    f"the store's embedder {self.name!r} returned a vector of {vector.shape[0]} "
                    f'floats; index["dims"] is {self.dimensions}'
                )
        return out

    async def embed_query(self, text: str) -> Vector:
        """The unit vector of a query (LangChain embedders may embed queries differently)."""
        if self._langchain is None:
            [vector] = await self.embed_documents([text])
            return vector
        try:
            raw = await self._langchain.aembed_query(text)
        except Exception as exc:  # the user's embedder: any failure is a model failure
            raise ModelError(f"the store's embedder {self.name!r} failed: {exc}") from exc
        vector = unit(raw)
        if vector.shape != (self.dimensions,):
            raise ModelError(
                f"the store's embedder {self.name!r} returned a query vector of "
                f'{vector.shape[0]} floats; index["dims"] is {self.dimensions}'
            )
        return vector


def make_embedder(index: object) -> StoreEmbedder | None:
    """The embedder an `IndexConfig` names, or None when it names none (lexical only)."""
    if index is None:
        return None
    if not isinstance(index, dict):
        raise ConfigurationError(f"index must be an IndexConfig dict, got {index!r}")
    if index.get("embed") is None:
        return None
    return StoreEmbedder(index["embed"], index.get("dims"))


class VectorIndex:
    """Item vectors in a Chroma collection: one record per indexed text, with the item id
    and version as metadata. Every Chroma call runs on one worker thread, in order.

    Args:
        embedder: Its name and dimensions are recorded with the collection.
        location: `chroma:///folder` (embedded Chroma, held by this process) or
            `chroma+http://host:port` (a Chroma server); None for a private temporary folder
            deleted by `aclose()`.
        client: A Chroma client to use instead of `location`; left open by `aclose()`.
        collection: The collection name.

    Raises:
        MissingDependency: chromadb is not installed (`pip install 'memweave[chroma]'`).
        ConfigurationError: Both `location` and `client`, or a bad location.
    """

    def __init__(
        self,
        embedder: StoreEmbedder,
        *,
        location: str | None = None,
        client: Any = None,
        collection: str = "memweave_store",
    ) -> None:
        try:
            import chromadb  # noqa: F401 - only checks that the extra is installed
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        if location is not None and client is not None:
            raise ConfigurationError("pass either vectors= or chroma_client=, not both")
        self.embedder = embedder
        self._location = location
        self._given = client
        self._collection_name = collection
        self._collection: Any = None
        self._close: Callable[[], None] | None = None
        self._tempdir: str | None = None
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memweave")
        if location is not None:
            from memweave.providers._chroma_client import parse_chroma_url

            parse_chroma_url(location)  # a bad URL fails now, not at first use

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        with self._map_errors():
            return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        import chromadb.errors

        try:
            yield
        except chromadb.errors.ChromaError as exc:
            raise BackendUnavailable(f"Chroma failed: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"Chroma failed: {type(exc).__name__}: {exc}") from exc

    def _open(self) -> Any:
        if self._collection is not None:
            return self._collection
        from memweave.context._index import open_collection

        if self._given is not None:
            client = self._given
        elif self._location is None:
            import chromadb

            self._tempdir = tempfile.mkdtemp(prefix="memweave-store-")
            client = chromadb.PersistentClient(self._tempdir)
            self._close = getattr(client, "close", None)
        else:
            client = self._client_from(self._location)
        self._collection = open_collection(
            client, self._collection_name, self.embedder.name, self.embedder.dimensions
        )
        return self._collection

    def _client_from(self, location: str) -> Any:
        from memweave.providers._chroma_client import EmbeddedChroma, parse_chroma_url

        kind, options = parse_chroma_url(location)
        options.pop("collection", None)
        if kind == "path":
            embedded = EmbeddedChroma(options.pop("path"), **options)
            self._close = embedded.close
            return embedded.client
        import chromadb

        client = chromadb.HttpClient(**options)
        self._close = getattr(client, "close", None)
        return client

    # -- blocking work, on the worker -----------------------------------------------------------

    def _put(self, entries: Sequence[tuple[str, str, Sequence[Vector]]]) -> None:
        collection = self._open()
        items = [item for item, _, _ in entries]
        for start in range(0, len(items), _CHUNK):
            collection.delete(where={"item": {"$in": items[start : start + _CHUNK]}})
        ids: list[str] = []
        vectors: list[list[float]] = []
        metadatas: list[dict[str, Any]] = []
        for item, version, item_vectors in entries:
            for number, vector in enumerate(item_vectors):
                ids.append(f"{item}.{version}.{number}")
                vectors.append([float(x) for x in vector])
                metadatas.append({"item": item, "version": version})
        for start in range(0, len(ids), _CHUNK):
            end = start + _CHUNK
            collection.upsert(
                ids=ids[start:end], embeddings=vectors[start:end], metadatas=metadatas[start:end]
            )

    def _get(self, items: Sequence[str]) -> dict[str, dict[str, list[Vector]]]:
        collection = self._open()
        out: dict[str, dict[str, list[Vector]]] = {}
        for start in range(0, len(items), _CHUNK):
            found = collection.get(
                where={"item": {"$in": list(items[start : start + _CHUNK])}},
                include=["embeddings", "metadatas"],
            )
            for metadata, vector in zip(found["metadatas"], found["embeddings"], strict=True):
                versions = out.setdefault(str(metadata["item"]), {})
                versions.setdefault(str(metadata["version"]), []).append(
                    np.asarray(vector, dtype=np.float32)
                )
        return out

    def _delete(self, items: Sequence[str]) -> None:
        collection = self._open()
        for start in range(0, len(items), _CHUNK):
            collection.delete(where={"item": {"$in": list(items[start : start + _CHUNK])}})

    def _shutdown(self) -> None:
        if self._close is not None:
            self._close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    # -- async face ------------------------------------------------------------------------------

    async def put(self, entries: Sequence[tuple[str, str, Sequence[Vector]]]) -> None:
        """Replace the vectors of each `(item id, version, vectors)`."""
        if entries:
            await self._run(self._put, entries)

    async def fetch(self, items: Sequence[str]) -> dict[str, dict[str, list[Vector]]]:
        """The stored vectors of each item that has any, by version (two versions only while
        puts of it race)."""
        if not items:
            return {}
        return await self._run(self._get, items)

    async def delete(self, items: Sequence[str]) -> None:
        """Delete every vector of these items."""
        if items:
            await self._run(self._delete, items)

    async def aclose(self) -> None:
        """Close the client built here (a temporary folder is deleted)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._worker, self._shutdown)
        finally:
            self._worker.shutdown(wait=True)
