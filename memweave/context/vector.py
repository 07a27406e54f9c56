"""`VectorMemory`: long-term memory on Chroma, hybrid (dense + BM25) retrieval, scoped per user."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from memweave._group_commit import GroupCommit
from memweave._loops import PerLoop
from memweave.context._records import check_id, memory_key, new_memory, read_scope
from memweave.context._render import CountsTextTokens, default_token_counter, render_memories
from memweave.context.base import Context, ContextProvider
from memweave.context.embeddings import ChromaDefaultEmbeddings, EmbeddingFunction
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidArgument,
    MissingDependency,
    ProviderClosed,
)
from memweave.messages import ChatMessage
from memweave.session import Session

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex
    from memweave.context._lexical import NewMemory, Row

__all__ = ["MemoryHit", "RetrievalMode", "VectorMemory"]

RetrievalMode = Literal["dense", "lexical", "hybrid"]
"""`dense` (embeddings), `lexical` (BM25) or `hybrid` (both, fused; the default)."""

_MODES = ("dense", "lexical", "hybrid")
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_MAX_BATCH = 256
_T = TypeVar("_T")


_ClientFactory = Callable[[], tuple[Any, Callable[[], None] | None]]
"""Makes the Chroma client, and says how to close it (None: the caller's, left open)."""


def _embedded(folder: Path) -> tuple[Any, Callable[[], None] | None]:
    from memweave.providers._chroma_client import EmbeddedChroma

    embedded = EmbeddedChroma(folder)
    return embedded.client, embedded.close


def _private(folder: Path) -> tuple[Any, Callable[[], None] | None]:
    import chromadb

    # A private temporary folder: no other process can know of it to share it.
    client: Any = chromadb.PersistentClient(str(folder))
    return client, client.close


class MemoryHit(BaseModel):
    """One memory found by a search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The memory's id (the message id, for memories stored by `invoked`)."""
    text: str
    """The remembered text."""
    score: float = Field(ge=0.0, le=1.0)
    """Similarity to the query in [0, 1], higher is better; 1 for an exact match."""
    created_at: datetime
    """When the remembered text was written (UTC)."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """The metadata given to `add`."""
    speaker: str | None = None
    """Who said it, when known (a message's `name`, else its role)."""
    role: str | None = None
    """The role of the message it came from, for memories stored by `invoked`."""
    session_id: str | None = None
    """The session it was written in, when known."""


class VectorMemory(ContextProvider):
    """Long-term memory in a Chroma collection, with hybrid dense + BM25 retrieval.

    Vectors live in Chroma, which is the source of truth: each record holds the memory's text,
    ids, time and metadata. Beside it, a SQLite file holds a catalogue of the memories and an
    FTS5 (BM25, porter-stemmed) index. Each memory is indexed with its neighbouring turns in
    its session as context, so an answer is found by the question asked just before it, and
    with its date (UTC), so "what did we discuss on 8 May 2023?" (or "May 8th", "2023-05-08")
    finds that day's memories.

    Sharing: the catalogue is an index of the Chroma collection and catches up with it: fully
    when opened, before each read (`search`, `count`, `delete`, `clear`) whenever Chroma holds
    another number of records than it accounts for, and for any dense hit it does not know.
    So processes sharing a Chroma server (or one client) see each other's writes and deletes,
    each with its own catalogue file, or with one catalogue file shared on one host; and a
    `":memory:"` catalogue is rebuilt from Chroma whenever it is opened. Limits: if, between
    two reads, one memory is deleted and another added through other catalogues, the counts
    still match, so until they differ again or this memory is reopened the deleted one can
    still come up in lexical results and the added one only in dense ones; a session attached
    elsewhere to a memory this catalogue already holds (see `add`) is seen after reopening;
    and the same text added through two catalogues is two Chroma records, read as one memory.

    Scoping: a write is stamped with its `user_id`, else with its `session_id`. Every read and
    delete names a scope: `user_id` (optionally narrowed to one `session_id`), or only
    `session_id`, which reads the memories written without a user in that session. No call
    spans every user. Ids and metadata are stored as data and never become filter operators.

    As a `ContextProvider`, `invoked` stores each turn's user and assistant texts (idempotent by
    message id) and `invoking` searches with the newest user message, returning the hits as
    fenced reference data in `Context.instructions`, within `max_memory_tokens` and at or above
    `min_score`.

    Event loops: a memory works in any event loop (consecutive `asyncio.run` calls, a test
    framework's loop per test, threads each running a loop), also with a `client` passed in:
    Chroma and SQLite run on the memory's own worker thread, whichever loop calls, and what
    waits in a loop (batched adds, the opening lock) is kept per loop. Adds queued in one loop
    are written by that loop. The `embedder` must work in any loop too (the offline ones do;
    a network client may keep connections in the loop that first used it).

    Args:
        path: Folder of an embedded Chroma (`PersistentClient`); the SQLite catalogue is
            written into it as `memweave-<collection>.sqlite3`. While open, the folder belongs
            to this process (see `memweave.providers.chroma.EmbeddedChroma`); to share a
            memory between processes, run a Chroma server and pass `client=` (see Sharing).
            With neither `path` nor `client`, both live in a temporary folder deleted by
            `aclose()`.
        client: A Chroma client to use instead (e.g. `chromadb.HttpClient(...)`); then
            `lexical_path` is required.
        collection: The Chroma collection name (3-512 characters of `[a-zA-Z0-9._-]`).
        embedder: The embedding function; `ChromaDefaultEmbeddings()` when None. Its name and
            dimensions are recorded with the collection.
        lexical_path: The SQLite catalogue file (or `":memory:"`, rebuilt from Chroma when
            opened), overriding the default. One file indexes one collection.
        mode: Default retrieval mode of `search` and `invoking`.
        k: How many memories `invoking` retrieves at most.
        min_score: `invoking` leaves out hits scoring below this.
        max_memory_tokens: Most tokens the injected instructions may take.
        token_counter: Anything with `count_text(text) -> int`; a tiktoken `TokenCounter` when
            None (about 4 characters per token without tiktoken).
        context_window: Turns on each side of a memory, in its session, indexed with it.

    Raises:
        MissingDependency: chromadb is not installed (`pip install 'memweave[chroma]'`).
        ConfigurationError: Bad options. On first use: the collection holds vectors of
            another embedder, or the catalogue file indexes another collection.

    Example:
        ```python
        async with VectorMemory("./memory") as memory:
            await memory.add("Ada prefers window seats.", user_id="ada")
            hits = await memory.search("Where does Ada like to sit?", user_id="ada")
        ```
    """

    source_id = "vector_memory"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        client: Any = None,
        collection: str = "memweave_memory",
        embedder: EmbeddingFunction | None = None,
        lexical_path: str | os.PathLike[str] | None = None,
        mode: RetrievalMode = "hybrid",
        k: int = 5,
        min_score: float = 0.25,
        max_memory_tokens: int = 1000,
        token_counter: CountsTextTokens | None = None,
        context_window: int = 2,
    ) -> None:
        try:
            import chromadb  # noqa: F401 - only checks that the extra is installed
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        if path is not None and client is not None:
            raise ConfigurationError("pass either path= or client=, not both")
        if not isinstance(collection, str) or not _COLLECTION_NAME.match(collection):
            raise ConfigurationError(
                f"collection must be 3-512 characters of [a-zA-Z0-9._-], starting and ending "
                f"with a letter or digit; got {collection!r}"
            )
        if embedder is None:
            embedder = ChromaDefaultEmbeddings()
        elif not isinstance(embedder, EmbeddingFunction):
            raise ConfigurationError(
                f"embedder must have embed(), name and dimensions; got {embedder!r}"
            )
        self._check_options(mode, k, min_score, max_memory_tokens, context_window)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if client is None:
            if path is None:
                self._tempdir = tempfile.TemporaryDirectory(prefix="memweave-memory-")
                path = self._tempdir.name
            folder = Path(path)
            if lexical_path is None:
                lexical_path = folder / f"memweave-{collection}.sqlite3"
            make = _private if self._tempdir is not None else _embedded
            self._make_client: _ClientFactory = lambda: make(folder)
        else:
            if lexical_path is None:
                raise ConfigurationError(
                    "with client=, pass lexical_path= (a SQLite file for the catalogue and "
                    "BM25 index, or ':memory:')"
                )
            self._make_client = lambda: (client, None)
        self.collection_name = collection
        self.embedder = embedder
        self.lexical_path = str(lexical_path)
        self.mode: RetrievalMode = mode
        self.k = k
        self.min_score = float(min_score)
        self.max_memory_tokens = max_memory_tokens
        self._token_counter = token_counter
        self.context_window = context_window
        self._index: HybridIndex | None = None
        self._open_lock = PerLoop(asyncio.Lock)
        # One thread does every Chroma and SQLite call, in submission order: a search queued
        # after a write sees it, and the SQLite connection is never shared between threads.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memweave")
        self._adds: GroupCommit[NewMemory, str] = GroupCommit(self._write, max_batch=_MAX_BATCH)
        self._closed = False

    @staticmethod
    def _check_options(
        mode: object, k: object, min_score: object, max_tokens: object, window: object
    ) -> None:
        if mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES}, got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise ConfigurationError(f"k must be an int from 1 to 1000, got {k!r}")
        if (
            isinstance(min_score, bool)
            or not isinstance(min_score, int | float)
            or not 0 <= min_score <= 1
        ):
            raise ConfigurationError(f"min_score must be a number in [0, 1], got {min_score!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigurationError(
                f"max_memory_tokens must be a positive int, got {max_tokens!r}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 10:
            raise ConfigurationError(f"context_window must be an int from 0 to 10, got {window!r}")

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        with self._map_errors():
            return await loop.run_in_executor(self._worker, function, *args)

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        import chromadb.errors

        try:
            yield
        except chromadb.errors.ChromaError as exc:
            raise BackendUnavailable(f"Chroma failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise BackendUnavailable(
                f"the memory catalogue {self.lexical_path!r} failed: {exc}"
            ) from exc

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
            self._index = self._open_blocking()
        return self._index

    def _open_blocking(self) -> HybridIndex:
        from memweave.context._fusion import CONTEXT_WEIGHT, DATE_WEIGHT
        from memweave.context._index import HybridIndex, open_collection
        from memweave.context._lexical import LexicalStore

        name, dimensions = self.embedder.name, self.embedder.dimensions
        client, close_client = self._make_client()
        lexical = None
        try:
            collection = open_collection(client, self.collection_name, name, dimensions)
            lexical = LexicalStore(
                self.lexical_path,
                context_window=self.context_window,
                context_weight=CONTEXT_WEIGHT,
                date_weight=DATE_WEIGHT,
            )
            lexical.check_owner(self.collection_name, name, dimensions)
            index = HybridIndex(
                collection, lexical, dimensions=dimensions, close_client=close_client
            )
            index.catch_up(full=True)
        except BaseException:
            if lexical is not None:
                lexical.close()
            if close_client is not None:
                close_client()
            raise
        return index

    @property
    def token_counter(self) -> CountsTextTokens:
        """The counter that budgets `invoking`'s instructions."""
        if self._token_counter is None:
            self._token_counter = default_token_counter()
        return self._token_counter

    # -- direct API ---------------------------------------------------------------------------

    async def add(
        self,
        text: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        id: str | None = None,
        speaker: str | None = None,
        role: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Remember `text`; returns the id of the memory holding it.

        Idempotent: adding a text its scope already holds, or an id its scope already holds,
        stores nothing and returns the stored memory's id. If the stored memory is of another
        session of the user, it becomes visible from this session too (`search`, `count` and
        `clear` with this `session_id` find it); its `session_id` stays the first one. Memories
        of one session are linked in the order they are added, and each is indexed with its
        neighbours and its date. Concurrent calls are written together, in call order, in one
        batch.

        Args:
            text: What to remember.
            user_id: The user it belongs to; the memory is in that user's scope.
            session_id: The session it was said in; without `user_id`, the memory is in that
                session's scope.
            metadata: JSON data returned with hits.
            id: The memory's id, unique in its scope; a fresh one when None.
            speaker: Who said it; a query naming the speaker ranks it higher in hybrid mode.
            role: The role of the message it came from.
            created_at: When it was said (UTC when naive); now when None.

        Raises:
            InvalidArgument: A bad argument, or neither `user_id` nor `session_id`.
            BackendUnavailable: Chroma or SQLite failed.
            ModelError: The embedder failed.
            ProviderClosed: The memory was closed.
        """
        self._check_open("add")
        item = new_memory(
            text,
            user_id=user_id,
            session_id=session_id,
            metadata=metadata,
            memory_id=id,
            speaker=speaker,
            role=role,
            created_at=created_at,
        )
        return await self._adds.submit(item)  # concurrent adds are written in batches

    async def _write(self, items: list[NewMemory]) -> list[str]:
        index = await self._open("add")
        known = await self._run(index.lookup, items)
        fresh: list[NewMemory] = []
        seen: dict[tuple[str, str], NewMemory] = {}
        fresh_keys: set[str] = set()
        for item, stored in zip(items, known, strict=True):
            duplicate = (item.scope, item.text_key) in seen or item.key in fresh_keys
            if stored is None and not duplicate:
                seen[(item.scope, item.text_key)] = item
                fresh_keys.add(item.key)
                fresh.append(item)
        if fresh:
            vectors = await self.embedder.embed([item.text for item in fresh])
            if len(vectors) != len(fresh):
                raise ConfigurationError(
                    f"embedder {self.embedder.name!r} returned {len(vectors)} vectors "
                    f"for {len(fresh)} texts"
                )
            stored_ids = dict(
                zip(
                    (item.key for item in fresh),
                    await self._run(index.write, fresh, vectors),
                    strict=True,
                )
            )
        else:
            stored_ids = {}
        out: list[str] = []
        repeated: list[NewMemory] = []
        for item, stored in zip(items, known, strict=True):
            if stored is not None:
                out.append(stored)
            elif item.key in stored_ids:
                out.append(stored_ids[item.key])
            else:
                twin = seen.get((item.scope, item.text_key))
                out.append(stored_ids[twin.key] if twin is not None else item.id)
            if item.session_id and (stored is not None or out[-1] != item.id):
                repeated.append(item)
        if repeated:
            # Stored once, under its first session; visible from the new one too.
            await self._run(index.attach, repeated)
        return out

    async def _flush(self) -> None:
        """Wait until every add queued so far is written."""
        await self._adds.flush()

    async def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        k: int = 5,
        mode: RetrievalMode | None = None,
        min_score: float = 0.0,
    ) -> list[MemoryHit]:
        """Return the `k` memories of the scope most similar to `query`, best first.

        An exact match (same text, ignoring case and whitespace) ranks first with score 1.

        Args:
            query: The text to search for.
            user_id: Search this user's memories.
            session_id: With `user_id`, only that session's; alone, the memories written
                without a user in that session.
            k: How many hits at most.
            mode: `dense`, `lexical` or `hybrid`; the memory's `mode` when None.
            min_score: Leave out hits scoring below this.

        Raises:
            InvalidArgument: A bad argument, or neither `user_id` nor `session_id`.
            ProviderClosed: The memory was closed.
        """
        self._check_open("search")
        scope, session = read_scope(user_id, session_id, operation="search")
        if not isinstance(query, str):
            raise InvalidArgument("query", query, "must be a str")
        mode = self.mode if mode is None else mode
        if mode not in _MODES:
            raise InvalidArgument("mode", mode, f"must be one of {_MODES}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise InvalidArgument("k", k, "must be an int from 1 to 1000")
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            raise InvalidArgument("min_score", min_score, "must be a number")
        if not query.strip():
            return []
        await self._flush()
        index = await self._open("search")
        vector = None
        if mode != "lexical":
            [vector] = await self.embedder.embed([query])
        found = await self._run(lambda: index.search(scope, session, query, vector, k=k, mode=mode))
        return [_hit(row, score) for row, score in found if score >= min_score]

    async def delete(
        self, id: str, *, user_id: str | None = None, session_id: str | None = None
    ) -> bool:
        """Forget the memory `id` of the scope; returns whether it existed.

        Memory ids are unique per scope, so the scope is named here as in `search`.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("delete")
        memory_id = check_id("id", id, optional=False)
        scope, session = read_scope(user_id, session_id, operation="delete")
        await self._flush()
        index = await self._open("delete")
        memory = (memory_id, memory_key(scope, memory_id))
        return await self._run(index.delete, scope, session, memory) > 0

    async def clear(self, *, user_id: str | None = None, session_id: str | None = None) -> int:
        """Forget every memory of the scope; returns how many were deleted.

        With `user_id` and `session_id`, that is every memory visible from the session,
        including one first said in another session (see `add`), which is then gone from both.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("clear")
        scope, session = read_scope(user_id, session_id, operation="clear")
        await self._flush()
        index = await self._open("clear")
        return await self._run(index.delete, scope, session, None)

    async def count(self, *, user_id: str | None = None, session_id: str | None = None) -> int:
        """Return how many memories the scope holds.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("count")
        scope, session = read_scope(user_id, session_id, operation="count")
        await self._flush()
        index = await self._open("count")
        return await self._run(index.count, scope, session)

    # -- ContextProvider ----------------------------------------------------------------------

    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        """Search with the newest user message and return the hits as fenced reference data.

        The scope is the session's user, else the session. Memories that are among `messages`
        already are left out. Returns `Context()` when nothing scores `min_score` or fits
        `max_memory_tokens`.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("invoking")
        query = next((m.text for m in reversed(messages) if m.role == "user" and m.text), None)
        if query is None:
            return Context()
        present = {message.id for message in messages}
        hits = await self.search(
            query,
            user_id=session.user_id,
            session_id=None if session.user_id is not None else session.id,
            # Hits already in the conversation are dropped below; ask for enough spares.
            k=min(1000, self.k + min(len(present), 50)),
            min_score=self.min_score,
        )
        instructions = render_memories(
            [hit for hit in hits if hit.id not in present][: self.k],
            self.max_memory_tokens,
            self.token_counter.count_text,
        )
        return Context(instructions=instructions)

    async def invoked(
        self,
        session: Session,
        request_messages: Sequence[ChatMessage],
        response_messages: Sequence[ChatMessage],
        error: BaseException | None = None,
    ) -> None:
        """Store the turn's user and assistant texts, idempotently by message id.

        Nothing is stored for a failed call (`error` set); a retry stores the turn.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("invoked")
        if error is not None:
            return
        adds = [
            self.add(
                message.text,
                user_id=session.user_id,
                session_id=session.id,
                id=message.id,
                speaker=message.name or message.role,
                role=message.role,
                created_at=message.created_at,
            )
            for message in (*request_messages, *response_messages)
            if message.role in ("user", "assistant") and message.text.strip()
        ]
        await asyncio.gather(*adds)

    async def aclose(self) -> None:
        """Finish queued writes and close the catalogue. Idempotent; a `client=` passed in is
        left open. An ephemeral memory (no `path`, no `client`) is deleted. Any other method
        called afterwards raises `ProviderClosed`."""
        if self._closed:
            return
        try:
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
            f"VectorMemory(collection={self.collection_name!r}, "
            f"embedder={self.embedder.name!r}, mode={self.mode!r})"
        )


def _hit(row: Row, score: float) -> MemoryHit:
    return MemoryHit(
        id=row.id,
        text=row.text,
        score=max(0.0, min(1.0, score)),
        created_at=datetime.fromtimestamp(row.created_at, UTC),
        metadata=json.loads(row.metadata),
        speaker=row.speaker,
        role=row.role,
        session_id=row.session_id or None,
    )
