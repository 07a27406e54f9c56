"""`VectorMemory`: long-term memory on Chroma, hybrid (dense + BM25) retrieval, scoped per user."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import JsonValue

from memweave._group_commit import GroupCommit
from memweave._loops import PerLoop
from memweave.context._facts_engine import FactStore
from memweave.context._facts_queue import ExtractionQueue, Job
from memweave.context._fusion import FusionWeights
from memweave.context._records import check_id, memory_key, new_memory, read_scope
from memweave.context._render import CountsTextTokens, default_token_counter, render_memories
from memweave.context._vector_parts import (
    MemoryHit,
    RetrievalMode,
    check_fusion,
    check_kind,
    check_options,
    check_search,
    check_setup,
    client_factory,
    count_kinds,
    hit_of,
    map_errors,
    open_index,
    quantized_embedder,
    search_kinds,
    write_batch,
)
from memweave.context.base import Context, ContextProvider
from memweave.context.embeddings import EmbeddingFunction
from memweave.context.facts import (
    ExtractionStats,
    FactExtractor,
    MemoryKind,
    MemoryVersion,
    RememberResult,
)
from memweave.errors import MissingDependency, ProviderClosed
from memweave.messages import ChatMessage
from memweave.session import Session

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex
    from memweave.context._lexical import NewMemory

__all__ = ["FusionWeights", "MemoryHit", "MemoryKind", "RetrievalMode", "VectorMemory"]

_MAX_BATCH = 1024  # adds per batch; written WRITE_CHUNK at a time, embedding overlapping writes
_T = TypeVar("_T")


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

    Turns and facts: what `add` and `invoked` store are turns, texts kept word for word. With
    an `extractor`, the memory also learns facts (`remember`, and `invoked` in the background):
    statements extracted from messages and kept up to date, each change recorded in its
    `history` (see `memweave.context.facts`). Facts live in the same collection, in a scope of
    their own beside their user's (or session's) turns. `search`, `count`, `delete` and `clear`
    cover both kinds unless given `kind="turn"` or `kind="fact"`; every hit says its `kind`.

    As a `ContextProvider`, `invoked` stores each turn's user and assistant texts (idempotent by
    message id), and with an `extractor` queues them for fact extraction (off the turn's
    critical path; see `remember` and `flush`). `invoking` searches with the newest user
    message (both kinds, unless `inject_kind` says one), returning the hits as fenced reference
    data in `Context.instructions`, within `max_memory_tokens` and at or above `min_score`.

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
        min_score: `invoking` leaves out hits scoring below this. The default, 0.23, is
            measured for the default model, fusion and hybrid mode (`python -m
            benchmarks.min_score`): the highest cut keeping 99% of the relevant top-5 hits of
            LoCoMo's development questions both in one store holding every conversation and
            in a fresh store per LoCoMo session (a new user's few memories). An unrelated
            question then injects nothing in 88% of cases in the large store (0.26 memories
            on average) and in all cases in the small ones. In a small store BM25 tells
            little, so a question sharing no telling word with a memory scores about its
            dense similarity / 2.65 and can fall under the cut ("Do you know my name?" for
            "Hello, my name is Alice" scores 0.20, "What's my name?" 0.48). In `dense` mode
            the same rule gives 0.20. Re-run the benchmark after changing `fusion`.
        max_memory_tokens: Most tokens the injected instructions may take.
        token_counter: Anything with `count_text(text) -> int`; a tiktoken `TokenCounter` when
            None (about 4 characters per token without tiktoken).
        context_window: Turns on each side of a memory, in its session, indexed with it.
        extractor: Learns facts from messages with a chat model (`FactExtractor`); None
            stores turns only.
        inject_kind: The kind of memories `invoking` injects, `"turn"` or `"fact"`; None
            injects both.
        fusion: How search weighs and fuses its signals; `FusionWeights()` when None.
        quantized: Without `embedder`, use `ChromaDefaultEmbeddings(quantized=True)`.

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
        min_score: float = 0.23,
        max_memory_tokens: int = 1000,
        token_counter: CountsTextTokens | None = None,
        context_window: int = 2,
        extractor: FactExtractor | None = None,
        inject_kind: MemoryKind | None = None,
        fusion: FusionWeights | None = None,
        quantized: bool = False,
    ) -> None:
        try:
            import chromadb  # noqa: F401 - only checks that the extra is installed
        except ImportError as exc:
            raise MissingDependency("chromadb", "chroma") from exc
        embedder = quantized_embedder(embedder, quantized)
        embedder = check_setup(collection, embedder, extractor, inject_kind)
        check_options(mode, k, min_score, max_memory_tokens, context_window)
        self.fusion = check_fusion(fusion)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if client is None and path is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="memweave-memory-")
            path = self._tempdir.name
        self._make_client, lexical_path = client_factory(
            path, client, collection, lexical_path, private=self._tempdir is not None
        )
        self.collection_name = collection
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
        self._adds: GroupCommit[NewMemory, str] = GroupCommit(self._write, max_batch=_MAX_BATCH)
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

    # -- plumbing -----------------------------------------------------------------------------

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
        return await write_batch(items, index=index, embedder=self.embedder, run=self._run)

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
        kind: MemoryKind | None = None,
    ) -> list[MemoryHit]:
        """Return the `k` memories of the scope most similar to `query`, best first.

        An exact match (same text, ignoring case and whitespace) ranks first with score 1.
        Turns and facts are scored alike and merged by score.

        Args:
            query: The text to search for.
            user_id: Search this user's memories.
            session_id: With `user_id`, only that session's (its turns, and the facts learned
                or confirmed in it); alone, the memories written without a user in that session.
            k: How many hits at most.
            mode: `dense`, `lexical` or `hybrid`; the memory's `mode` when None.
            min_score: Leave out hits scoring below this.
            kind: `"turn"` or `"fact"` for one kind only; None for both.

        Raises:
            InvalidArgument: A bad argument, or neither `user_id` nor `session_id`.
            ProviderClosed: The memory was closed.
        """
        self._check_open("search")
        scope, session = read_scope(user_id, session_id, operation="search")
        kinds = check_kind(kind)
        mode = check_search(query, self.mode if mode is None else mode, k, min_score)
        if not query.strip():
            return []
        await self._flush()
        index = await self._open("search")
        vector = None
        if mode != "lexical":
            [vector] = await self.embedder.embed([query])
        found = await self._run(
            lambda: search_kinds(index, scope, session, kinds, query, vector, k=k, mode=mode)
        )
        return [hit_of(row, score, what) for row, score, what in found if score >= min_score]

    async def delete(
        self,
        id: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> bool:
        """Forget the memory `id` of the scope; returns whether it existed.

        Memory ids are unique per scope and kind, so the scope is named here as in `search`;
        `kind` None looks for a turn, then a fact. A deleted fact keeps its history, which
        records the deletion.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("delete")
        memory_id = check_id("id", id, optional=False)
        scope, session = read_scope(user_id, session_id, operation="delete")
        kinds = check_kind(kind)
        await self._flush()
        index = await self._open("delete")
        if "turn" in kinds:
            memory = (memory_id, memory_key(scope, memory_id))
            if await self._run(index.delete, scope, session, memory) > 0:
                return True
        return "fact" in kinds and await self._facts.delete(scope, session, memory_id) > 0

    async def clear(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Forget every memory of the scope (of one `kind`, if given); returns how many were
        deleted. Each deleted fact's history records the deletion.

        With `user_id` and `session_id`, that is every memory visible from the session,
        including one first said in another session (see `add`), which is then gone from both.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("clear")
        scope, session = read_scope(user_id, session_id, operation="clear")
        kinds = check_kind(kind)
        await self._flush()
        index = await self._open("clear")
        deleted = 0
        if "turn" in kinds:
            deleted += await self._run(index.delete, scope, session, None)
        if "fact" in kinds:
            deleted += await self._facts.delete(scope, session, None)
        return deleted

    async def count(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Return how many memories the scope holds (of one `kind`, if given).

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("count")
        scope, session = read_scope(user_id, session_id, operation="count")
        kinds = check_kind(kind)
        await self._flush()
        index = await self._open("count")
        return await self._run(count_kinds, index, scope, session, kinds)

    # -- facts --------------------------------------------------------------------------------

    async def remember(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> RememberResult:
        """Learn the facts `messages` state, consolidated with the facts the scope holds.

        The model lists the facts of the user and assistant messages (a str is one user
        message); each one the scope does not hold already (`facts.DUPLICATE_THRESHOLD`) is
        shown to the model with the similar stored facts, and its ADD, UPDATE, DELETE and NONE
        decisions are checked and applied, each change recorded in the fact's `history`. A
        fact stated again changes nothing, and is never deleted for it. The scope is the
        user's (all their sessions), else the session's. A reply still malformed after its
        retries skips its step (logged), changing nothing. Returns what was found and changed.

        Raises:
            ConfigurationError: The memory has no `extractor`.
            InvalidArgument: Neither `user_id` nor `session_id`, or a bad id.
            InvalidMessage: An item of `messages` is not a `ChatMessage`.
            ModelError: A model call failed (nothing of the failed step was changed).
            BackendUnavailable: Chroma or SQLite failed.
            ProviderClosed: The memory was closed.
        """
        self._check_open("remember")
        return await self._facts.remember(messages, user_id=user_id, session_id=session_id)

    async def history(
        self, memory_id: str, *, user_id: str | None = None, session_id: str | None = None
    ) -> list[MemoryVersion]:
        """Return the changes of fact `memory_id` of the scope, oldest first (version 1, its
        ADD, first); empty for an unknown id or a turn (turns are never changed).

        History outlives the fact: a deleted fact's history ends with its DELETE. It is kept
        in the sibling Chroma collection `<collection>-history`. A `session_id` beside
        `user_id` does not narrow it.

        Raises:
            InvalidArgument: A bad id, or neither `user_id` nor `session_id`.
            ProviderClosed: The memory was closed.
        """
        self._check_open("history")
        return await self._facts.history(memory_id, user_id=user_id, session_id=session_id)

    async def flush(self) -> None:
        """Wait until the adds and the background extraction queued so far in this event
        loop are done (failed batches are logged and counted, see `extraction_stats`).

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("flush")
        await self._flush()
        if self._queue is not None:
            await self._queue.flush()

    @property
    def extraction_stats(self) -> ExtractionStats:
        """Counters of the background extraction of `invoked` (all zero without an extractor)."""
        return ExtractionStats() if self._queue is None else self._queue.stats

    # -- ContextProvider ----------------------------------------------------------------------

    async def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        """Search with the newest user message and return the hits as fenced reference data.

        The scope is the session's user, else the session; the kinds are `inject_kind`'s (both
        by default). Memories that are among `messages` already are left out. Returns
        `Context()` when nothing scores `min_score` or fits `max_memory_tokens`.

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
            kind=self.inject_kind,
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
        """Store the turn's user and assistant texts, idempotently by message id, and with an
        `extractor` queue them for fact extraction in the background.

        Nothing is stored for a failed call (`error` set); a retry stores the turn. The
        extraction queue holds `extractor.queue_size` batches per event loop: when it is full,
        this waits for room (backpressure; nothing is dropped). `flush()` and `aclose()` wait
        for it; see `extraction_stats` for its failures.

        Raises:
            ProviderClosed: The memory was closed.
        """
        self._check_open("invoked")
        if error is not None:
            return
        said = [
            message
            for message in (*request_messages, *response_messages)
            if message.role in ("user", "assistant") and message.text.strip()
        ]
        await asyncio.gather(
            *(
                self.add(
                    message.text,
                    user_id=session.user_id,
                    session_id=session.id,
                    id=message.id,
                    speaker=message.name or message.role,
                    role=message.role,
                    created_at=message.created_at,
                )
                for message in said
            )
        )
        if self._queue is not None and said:
            await self._queue.submit(Job(tuple(said), session.user_id, session.id))

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
            f"VectorMemory(collection={self.collection_name!r}, "
            f"embedder={self.embedder.name!r}, mode={self.mode!r})"
        )
