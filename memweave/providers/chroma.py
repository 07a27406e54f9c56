"""`ChromaChatHistoryProvider`: histories in a Chroma collection, embedded or on a Chroma server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from memweave._codec import OnCorrupt, decode_one
from memweave._group_commit import GroupCommit
from memweave._urls import mask_url
from memweave.embeddings import ChromaDefaultEmbeddings, EmbeddingFunction
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    InvalidArgument,
    MemweaveError,
    MissingDependency,
)
from memweave.messages import ChatMessage
from memweave.providers._chroma_client import EmbeddedChroma, parse_chroma_url
from memweave.providers.base import (
    ChatHistoryProvider,
    ReduceOn,
    StoredRecord,
    dedupe_batch,
    trim_count,
)
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

__all__ = ["DEFAULT_COLLECTION", "ChromaChatHistoryProvider", "EmbeddedChroma", "MessageHit"]

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "memweave_history"
"""The collection a provider uses unless told otherwise."""

_T = TypeVar("_T")
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_META_EMBEDDER = "memweave:embedder"
_META_DIMENSIONS = "memweave:dimensions"
_META_KIND = "memweave:kind"
_KIND = "history"
_MESSAGE = "message"
_SESSION = "session"
_PAGE = 5_000


@dataclass(frozen=True, slots=True)
class _Append:
    session_id: str
    records: list[StoredRecord]
    max_messages: int | None
    ttl: timedelta | None


class MessageHit(BaseModel):
    """One message found by `ChromaChatHistoryProvider.search`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: ChatMessage
    """The stored message."""
    score: float = Field(ge=0.0, le=1.0)
    """Cosine similarity to the query, clipped to [0, 1]; higher is better."""


def _hash(*parts: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _message_key(session_id: str, message_id: str) -> str:
    """The record id of a message: ids are per session, and any characters are safe."""
    return "m" + _hash(session_id, message_id)


def _session_key(session_id: str) -> str:
    return "s" + _hash(session_id)


def _text_of(data: bytes) -> str:
    """The text of a stored entry, for its vector; "" when it has none or is not ours."""
    try:
        content = json.loads(data)["m"].get("content", "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


class ChromaChatHistoryProvider(ChatHistoryProvider):
    """Chroma based history store: embedded (one process) or on a Chroma server (many).

    Each message is one record of the collection: its versioned JSON as the document, its
    text's vector as the embedding (so `search` finds messages by meaning), and as metadata
    its session, role, id and an explicit sequence number. Order is by that sequence, never
    by a clock: an append reads the highest sequence stored in the session (only the records
    above the highest this provider has seen) and which ids of its batch the session holds,
    then writes the new messages, numbered after it, in one call. A record's id is a hash of
    session and message id, so a message is stored once even when several processes race to
    add it. Each session also has one record holding its expiry time (`ttl`, on this
    machine's clock). Concurrent appends through one provider are written together: one read
    and one write per session (group commit).

    Chroma has no transactions, so what other backends do in one atomic step is done here in
    a few ordered calls, serialised within the provider: trimming to `max_messages` follows
    the append, and a `reduce_on="write"` rewrite is atomic only among this provider's own
    calls. Writers in several processes never lose or duplicate messages and keep each
    writer's order; two appends racing in different processes may take the same sequence
    number and are then ordered by writer. Reads fetch the session's records and sort them,
    so they cost in proportion to the session's length (bound it with `max_messages`).

    Embedded Chroma (`chroma:///path`, the default) serves one process; use a Chroma server
    (`chroma+http://host:port`) to share histories between processes.

    Args:
        url: `chroma:///path/to/folder` (embedded) or `chroma+http://host:port` /
            `chroma+https://...` (a server); `?collection=name` picks the collection.
            Defaults to the embedded folder `./chroma` when no `client` is given.
        client: A Chroma client to use instead of a URL; the caller keeps ownership.
        collection: The collection (3-512 characters of `[a-zA-Z0-9._-]`).
        embedder: Makes the vectors for `search` (`embed`, `name`, `dimensions`); Chroma's
            default model, `memweave.context.ChromaDefaultEmbeddings`, when None. Recorded
            with the collection: opening it with another raises `ConfigurationError`.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.

    Raises:
        MissingDependency: chromadb is not installed (`pip install 'memweave[chroma]'`).
        ConfigurationError: A bad URL or option; on first use, a collection holding another
            embedder's vectors or not made by this provider.

    Example:
        ```python
        async with ChromaChatHistoryProvider("chroma:///var/lib/chat") as history:
            await history.add_messages("s1", [ChatMessage.user("My flight is on Friday.")])
            hits = await history.search("s1", "when do I travel?", k=3)
        ```
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"durable"})

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        collection: str | None = None,
        embedder: EmbeddingFunction | None = None,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
        )
        try:
            import chromadb
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        if url is not None and client is not None:
            raise ConfigurationError("pass either url or client, not both")
        options: dict[str, Any] = {}
        self._make_client: Callable[[], tuple[Any, Callable[[], None] | None]]
        if client is None:
            self._url = url if url is not None else "chroma://./chroma"
            kind, options = parse_chroma_url(self._url)
            from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT

            tenant = options.pop("tenant", DEFAULT_TENANT)
            database = options.pop("database", DEFAULT_DATABASE)
            if kind == "path":
                folder = os.fspath(options["path"])

                def make() -> tuple[Any, Callable[[], None] | None]:
                    embedded = EmbeddedChroma(folder, tenant=tenant, database=database)
                    return embedded.client, embedded.close

            else:
                host, port, ssl = options["host"], options["port"], options["ssl"]

                def make() -> tuple[Any, Callable[[], None] | None]:
                    made: Any = chromadb.HttpClient(
                        host=host, port=port, ssl=ssl, tenant=tenant, database=database
                    )
                    return made, made.close

            self._make_client = make
        else:
            self._url = "chroma+client://"
            self._make_client = lambda: (client, None)
        name = collection if collection is not None else options.get("collection")
        name = name if name is not None else DEFAULT_COLLECTION
        if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
            raise ConfigurationError(
                "collection must be 3-512 characters of [a-zA-Z0-9._-], starting and ending "
                f"with a letter or digit; got {name!r}"
            )
        self.collection_name = name
        self._embedder = embedder
        self._collection: Any = None
        self._close_client: Callable[[], None] | None = None
        self._open_lock = asyncio.Lock()
        # One thread makes every Chroma call, in order: the provider's own writes never
        # interleave, and Chroma's blocking client stays off the event loop.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memweave")
        self._writer = uuid.uuid4().hex[:12]
        self._heads: dict[str, int] = {}
        # Concurrent appends to one session become one read and one write (group commit),
        # each call's records staying together in order.
        self._appends: GroupCommit[_Append, None] = GroupCommit(self._write_appends)

    @property
    def embedder(self) -> EmbeddingFunction:
        """The embedding function of this provider's vectors."""
        if self._embedder is None:
            self._embedder = ChromaDefaultEmbeddings()
        return self._embedder

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        collection = await self._ready()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, function, collection, *args)

    async def _ready(self) -> Any:
        if self._collection is None:
            async with self._open_lock:
                if self._collection is None:
                    embedder = self.embedder
                    loop = asyncio.get_running_loop()
                    self._collection = await loop.run_in_executor(
                        self._worker, self._open, embedder.name, embedder.dimensions
                    )
        return self._collection

    def _open(self, embedder: str, dimensions: int) -> Any:
        client, self._close_client = self._make_client()
        try:
            return self._open_collection(client, embedder, dimensions)
        except BaseException:
            self._release_client()
            raise

    def _release_client(self) -> None:
        close, self._close_client = self._close_client, None
        if close is not None:
            close()

    def _open_collection(self, client: Any, embedder: str, dimensions: int) -> Any:
        import chromadb.errors

        wanted = {_META_KIND: _KIND, _META_EMBEDDER: embedder, _META_DIMENSIONS: dimensions}
        try:
            collection = client.get_collection(self.collection_name, embedding_function=None)
        except chromadb.errors.NotFoundError:
            try:
                return client.create_collection(
                    self.collection_name,
                    metadata=wanted,
                    configuration={"hnsw": {"space": "cosine"}},
                    embedding_function=None,
                )
            except chromadb.errors.ChromaError:
                # Another process created it in between; check what it recorded.
                collection = client.get_collection(self.collection_name, embedding_function=None)
        found = collection.metadata or {}
        if found.get(_META_KIND) != _KIND:
            raise ConfigurationError(
                f"Chroma collection {self.collection_name!r} was not created by "
                "ChromaChatHistoryProvider; use another collection name"
            )
        if (found.get(_META_EMBEDDER), found.get(_META_DIMENSIONS)) != (embedder, dimensions):
            raise ConfigurationError(
                f"Chroma collection {self.collection_name!r} holds vectors of embedder "
                f"{found.get(_META_EMBEDDER)!r} ({found.get(_META_DIMENSIONS)} dimensions), not "
                f"{embedder!r} ({dimensions} dimensions); use that embedder or another collection"
            )
        return collection

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        import chromadb.errors
        import httpx

        try:
            yield
        except MemweaveError:
            raise
        except (chromadb.errors.ChromaError, httpx.HTTPError, OSError) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}", url=self._url) from exc
        except ValueError as exc:
            # chromadb's HTTP client reports an unreachable server as a ValueError.
            if "connect" in str(exc).lower():
                raise BackendUnavailable(str(exc), url=self._url) from exc
            raise

    def _vectors(self, vectors: Sequence[Sequence[float]]) -> list[list[float]]:
        out: list[list[float]] = []
        for vector in vectors:
            norm = sum(v * v for v in vector) ** 0.5
            out.append([v / norm for v in vector] if norm > 0 else self._blank())
        return out

    def _blank(self) -> list[float]:
        """The vector of a record with no text: a fixed unit vector."""
        return [1.0] + [0.0] * (self.embedder.dimensions - 1)

    async def _embed(self, records: Sequence[StoredRecord]) -> list[list[float]]:
        texts = [_text_of(record.data) for record in records]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        vectors = [self._blank() for _ in records]
        if todo:
            made = self._vectors(await self.embedder.embed([texts[i] for i in todo]))
            for i, vector in zip(todo, made, strict=True):
                vectors[i] = vector
        return vectors

    # -- blocking helpers (run on the worker thread) -----------------------------------------

    @staticmethod
    def _where(session_id: str, kind: str | None = None) -> dict[str, Any]:
        # Session ids are values under an explicit `$eq`: never operators or patterns.
        if kind is None:
            return {"sid": {"$eq": session_id}}
        return {"$and": [{"sid": {"$eq": session_id}}, {"kind": {"$eq": kind}}]}

    def _get_all(self, collection: Any, where: dict[str, Any], include: list[str]) -> Any:
        """`collection.get` in pages, merged, so a long session is not one huge response."""
        merged: dict[str, list[Any]] = {"ids": [], "metadatas": [], "documents": []}
        offset = 0
        while True:
            page = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
            merged["ids"].extend(page["ids"])
            for field in ("metadatas", "documents"):
                if page.get(field) is not None:
                    merged[field].extend(page[field])
            if len(page["ids"]) < _PAGE:
                return merged
            offset += _PAGE

    def _state(self, collection: Any, session_id: str) -> tuple[list[Any], float | None]:
        """The live session's message records as `(seq, tie, key, metadata, document)`, in
        order, and its expiry time (0 for none); `([], None)` when the session does not exist
        or has expired."""
        got = self._get_all(collection, self._where(session_id), ["metadatas", "documents"])
        expires: float | None = None
        rows = []
        for key, meta, document in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
            if meta.get("kind") == _SESSION:
                expires = float(meta.get("expires", 0) or 0)
            else:
                rows.append((int(meta["seq"]), str(meta.get("tie", "")), key, meta, document))
        if expires is None or (expires and expires <= time.time()):
            return [], None
        rows.sort(key=lambda row: row[:3])
        return rows, expires

    def _append_blocking(
        self,
        collection: Any,
        session_id: str,
        records: Sequence[StoredRecord],
        vectors: Sequence[Sequence[float]],
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        hint = self._heads.get(session_id, 0)
        session = _session_key(session_id)
        ids = [record.id for record in records]
        clauses: list[dict[str, Any]] = [{"kind": {"$eq": _SESSION}}, {"seq": {"$gt": hint}}]
        if ids:
            clauses.append({"mid": {"$in": ids}})
        seen = collection.get(
            where={"$and": [{"sid": {"$eq": session_id}}, {"$or": clauses}]},
            include=["metadatas"],
        )
        now = time.time()
        expired = exists = False
        head = hint
        present: set[str] = set()
        for meta in seen["metadatas"]:
            if meta.get("kind") == _SESSION:
                exists = True
                expires = float(meta.get("expires", 0) or 0)
                expired = expires != 0 and expires <= now
                head = max(head, int(meta.get("head", 0) or 0))
            else:
                head = max(head, int(meta["seq"]))
                present.add(str(meta.get("mid")))
        if expired:
            collection.delete(where=self._where(session_id))
            exists, head, present = False, 0, set()
        fresh = [(r, v) for r, v in zip(records, vectors, strict=True) if r.id not in present]
        if not fresh and not exists:
            return  # an empty batch (or only known ids) neither creates nor renews a session
        expires = now + ttl.total_seconds() if ttl is not None else 0.0
        metadatas = [self._metadata(session_id, r, head + n) for n, (r, _) in enumerate(fresh, 1)]
        head += len(fresh)
        # One call writes the batch and the session record together. It is an upsert, so a
        # message another process stored since the read above is written again, same content.
        collection.upsert(
            ids=[*(_message_key(session_id, r.id) for r, _ in fresh), session],
            embeddings=[*(v for _, v in fresh), self._blank()],
            documents=[*(r.data.decode("utf-8") for r, _ in fresh), ""],
            metadatas=[
                *metadatas,
                {"kind": _SESSION, "sid": session_id, "expires": expires, "head": head},
            ],
        )
        self._heads[session_id] = head
        if max_messages is not None:
            self._trim(collection, session_id, max_messages)

    def _metadata(self, session_id: str, record: StoredRecord, seq: int) -> dict[str, Any]:
        return {
            "kind": _MESSAGE,
            "sid": session_id,
            "seq": seq,
            "tie": self._writer,
            "role": record.role,
            "mid": record.id,
            "text": bool(_text_of(record.data).strip()),
        }

    def _trim(self, collection: Any, session_id: str, max_messages: int) -> None:
        rows, _ = self._state(collection, session_id)
        drop = trim_count([row[3].get("role", "") for row in rows], max_messages)
        if drop:
            collection.delete(ids=[row[2] for row in rows[:drop]])
            if drop == len(rows):
                collection.delete(ids=[_session_key(session_id)])

    def _read_blocking(
        self, collection: Any, session_id: str, limit: int | None, role: str | None
    ) -> list[bytes]:
        rows, _ = self._state(collection, session_id)
        if role is not None:
            rows = [row for row in rows if row[3].get("role") == role]
        if limit is not None:
            rows = rows[-limit:]
        return [str(row[4]).encode("utf-8") for row in rows]

    def _count_blocking(self, collection: Any, session_id: str) -> int:
        return len(self._state(collection, session_id)[0])

    def _clear_blocking(self, collection: Any, session_id: str) -> None:
        collection.delete(where=self._where(session_id))
        self._heads.pop(session_id, None)

    def _list_blocking(self, collection: Any, prefix: str | None) -> list[str]:
        got = self._get_all(collection, {"kind": {"$eq": _SESSION}}, ["metadatas"])
        now = time.time()
        out = []
        for meta in got["metadatas"]:
            session_id = str(meta.get("sid", ""))
            expires = float(meta.get("expires", 0) or 0)
            if (expires == 0 or expires > now) and session_id.startswith(prefix or ""):
                out.append(session_id)
        return out

    def _remove_blocking(self, collection: Any, session_id: str, ids: Sequence[str]) -> None:
        if ids:
            collection.delete(ids=[_message_key(session_id, i) for i in ids])
        if not self._state(collection, session_id)[0]:
            collection.delete(ids=[_session_key(session_id)])

    def _replace_blocking(
        self,
        collection: Any,
        session_id: str,
        records: Sequence[StoredRecord],
        vectors: Sequence[Sequence[float]],
        expected_last_id: str | None,
    ) -> bool:
        rows, expires = self._state(collection, session_id)
        last = str(rows[-1][3].get("mid")) if rows else None
        if last != expected_last_id:
            return False
        keep = {_message_key(session_id, r.id) for r in records}
        doomed = [row[2] for row in rows if row[2] not in keep]
        if doomed:
            collection.delete(ids=doomed)
        if not records:
            collection.delete(ids=[_session_key(session_id)])
            return True
        head = max([self._heads.get(session_id, 0), *(row[0] for row in rows)])
        metadatas = [self._metadata(session_id, r, head + n) for n, r in enumerate(records, 1)]
        head += len(records)
        # Renumbered after everything seen, so the rewritten history keeps its new order.
        collection.upsert(
            ids=[*(_message_key(session_id, r.id) for r in records), _session_key(session_id)],
            embeddings=[*vectors, self._blank()],
            documents=[*(r.data.decode("utf-8") for r in records), ""],
            metadatas=[
                *metadatas,
                {"kind": _SESSION, "sid": session_id, "expires": expires or 0.0, "head": head},
            ],
        )
        self._heads[session_id] = head
        return True

    # -- primitives ---------------------------------------------------------------------------

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        await self._appends.submit(_Append(session_id, list(records), max_messages, ttl))

    async def _write_appends(self, batch: list[_Append]) -> list[None]:
        groups: dict[tuple[str, int | None, timedelta | None], list[StoredRecord]] = {}
        for append in batch:
            key = (append.session_id, append.max_messages, append.ttl)
            groups.setdefault(key, []).extend(append.records)
        merged = {key: dedupe_batch(records) for key, records in groups.items()}
        flat = [record for records in merged.values() for record in records]
        vectors = iter(await self._embed(flat))
        for (session_id, max_messages, ttl), records in merged.items():
            own = [next(vectors) for _ in records]
            await self._run(self._append_blocking, session_id, records, own, max_messages, ttl)
        return [None] * len(batch)

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        return await self._run(self._read_blocking, session_id, limit, None)

    async def _read_system(self, session_id: str) -> list[bytes]:
        return await self._run(self._read_blocking, session_id, None, "system")

    async def _count(self, session_id: str) -> int:
        return await self._run(self._count_blocking, session_id)

    async def _clear(self, session_id: str) -> None:
        await self._run(self._clear_blocking, session_id)

    async def _list_sessions(self, prefix: str | None) -> list[str]:
        return await self._run(self._list_blocking, prefix)

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        await self._run(self._remove_blocking, session_id, list(message_ids))

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        vectors = await self._embed(records)
        return await self._run(
            self._replace_blocking, session_id, records, vectors, expected_last_id
        )

    async def _aclose(self) -> None:
        await self._appends.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._release_client)
        await loop.run_in_executor(None, self._worker.shutdown)

    # -- Chroma-only API ----------------------------------------------------------------------

    async def search(self, session_id: str, query: str, k: int = 5) -> list[MessageHit]:
        """Return the session's `k` messages most similar in meaning to `query`, best first.

        An unknown or expired session gives `[]`. Messages without text are never returned.

        Raises:
            InvalidSessionId: The session id cannot be stored.
            InvalidArgument: `query` is not a str, or `k` is not an int from 1 to 1000.
            CorruptRecord: A hit could not be decoded (with `on_corrupt="raise"`).
        """
        session_id = validate_session_id(session_id)
        if not isinstance(query, str):
            raise InvalidArgument("query", query, "must be a str")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise InvalidArgument("k", k, "must be an int from 1 to 1000")
        if not query.strip():
            return []
        [vector] = self._vectors(await self.embedder.embed([query]))
        with self._map_errors():
            found = await self._run(self._search_blocking, session_id, vector, k)
        hits: list[MessageHit] = []
        for position, (document, distance) in enumerate(found):
            try:
                message = decode_one(document, session_id=session_id, position=position)
            except CorruptRecord as exc:
                if self.on_corrupt == "raise":
                    raise
                logger.warning("skipping %s", exc)
                continue
            hits.append(MessageHit(message=message, score=max(0.0, min(1.0, 1.0 - distance))))
        return hits

    def _search_blocking(
        self, collection: Any, session_id: str, vector: list[float], k: int
    ) -> list[tuple[str, float]]:
        if not self._alive(collection, session_id):
            return []
        result = collection.query(
            query_embeddings=[vector],
            n_results=k,
            where={
                "$and": [
                    {"sid": {"$eq": session_id}},
                    {"kind": {"$eq": _MESSAGE}},
                    {"text": {"$eq": True}},
                ]
            },
            include=["documents", "distances"],
        )
        return [
            (str(document), float(distance))
            for document, distance in zip(
                result["documents"][0], result["distances"][0], strict=True
            )
        ]

    @staticmethod
    def _alive(collection: Any, session_id: str) -> bool:
        got = collection.get(ids=[_session_key(session_id)], include=["metadatas"])
        if not got["ids"]:
            return False
        expires = float(got["metadatas"][0].get("expires", 0) or 0)
        return expires == 0 or expires > time.time()

    def __repr__(self) -> str:
        return (
            f"ChromaChatHistoryProvider(url={mask_url(self._url)!r}, "
            f"collection={self.collection_name!r})"
        )
