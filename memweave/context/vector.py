"""`VectorMemory`: long-term memory on Chroma, hybrid (dense + BM25) retrieval, scoped per user.

The class is built in layers: its plumbing (options, worker thread, opening and closing) is
`memweave.context._vector_core`, its direct API (add, search, delete, clear, count)
`memweave.context._vector_ops`, how a batch of adds is written `memweave.context._vector_writes`;
here are fact learning and the `ContextProvider` hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from memweave.context._facts_queue import Job
from memweave.context._fusion import FusionWeights
from memweave.context._render import render_memories
from memweave.context._vector_ops import VectorOps
from memweave.context._vector_parts import MemoryHit, RetrievalMode
from memweave.context._vector_writes import IdTaken
from memweave.context.base import Context
from memweave.context.facts import (
    ExtractionStats,
    MemoryKind,
    MemoryVersion,
    RememberResult,
)
from memweave.messages import ChatMessage
from memweave.session import Session

__all__ = ["FusionWeights", "MemoryHit", "MemoryKind", "RetrievalMode", "VectorMemory"]

_LOG = logging.getLogger(__name__)


class VectorMemory(VectorOps):
    """Long-term memory in a Chroma collection, with hybrid dense + BM25 retrieval.

    Vectors live in Chroma, which is the source of truth: each record holds the memory's text,
    ids, time and metadata. Beside it, a SQLite file holds a catalogue of the memories and an
    FTS5 (BM25, porter-stemmed) index. Each memory is indexed with its neighbouring turns in
    its session as context, so an answer is found by the question asked just before it, and
    with its date (UTC), so "what did we discuss on 8 May 2023?" (or "May 8th", "2023-05-08")
    finds that day's memories.

    Sharing: the catalogue is an index of the Chroma collection and catches up with it one
    scope (user) at a time, reading that scope's keys only, never the whole collection: on the
    scope's first use by this memory (`search`, `count_memories`, `add`, `delete`, `clear`),
    before each later use whenever Chroma's record count has moved while the catalogue does not
    account for every record, and for any dense hit it does not know. So processes sharing a
    Chroma server (or one client) see each other's writes and deletes, each with its own
    catalogue file, or with one catalogue file shared on one host, at the cost of one filtered
    read of the used scope's keys; and a `":memory:"` catalogue is rebuilt from Chroma as
    its scopes are used. Dense candidates come from the catalogue's copies of the vectors,
    scored exactly, when the searched view holds at most 2,000 memories (Chroma's filtered
    search costs grow with the whole collection), else from Chroma's index. Limits: if,
    between two uses of a scope, one memory of it is deleted and another added through other
    catalogues while nothing else moves the record count, the deleted one can still come up
    and the added one not (but as a dense hit of Chroma's index, which catches the scope up)
    until the count moves, this memory is reopened or 10,000 other scopes were used since; a
    session attached elsewhere to a memory this catalogue already holds (see `add`) is seen
    after reopening; and the same text added through two catalogues at once is two Chroma
    records, read as one memory.

    Scoping: a write is stamped with its `user_id`, else with its `session_id`. Every read and
    delete names a scope: `user_id` (optionally narrowed to one `session_id`), or only
    `session_id`, which reads the memories written without a user in that session. No call
    spans every user. Ids and metadata are stored as data and never become filter operators.

    Turns and facts: what `add` and `invoked` store are turns, texts kept word for word. With
    an `extractor`, the memory also learns facts (`remember`, and `invoked` in the background):
    statements extracted from messages and kept up to date, each change recorded in its
    `history` (see `memweave.context.facts`). Facts live in the same collection, in a scope of
    their own beside their user's (or session's) turns. `search`, `count_memories`, `delete` and
    `clear` cover both kinds unless given `kind="turn"` or `kind="fact"`; every hit says its `kind`.

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
            written into it as `memweave-<namespace>_memory.sqlite3`. While open, the folder belongs
            to this process (see `memweave.providers.chroma.EmbeddedChroma`); to share a
            memory between processes, run a Chroma server and pass `client=` (see Sharing).
            With neither `path` nor `client`, both live in a temporary folder deleted by
            `aclose()`.
        client: A Chroma client to use instead (e.g. `chromadb.HttpClient(...)`); then
            `lexical_path` is required.
        namespace: The name this memory's data lives under, so several applications share
            one Chroma: the collection is `<namespace>_memory` (default `memweave`, so
            `memweave_memory`, as the chat histories' default is `memweave_history`), its
            facts' history `<namespace>_memory-history`. 1-504 characters of
            `[a-zA-Z0-9._-]`, starting with a letter or digit.
        embedder: The embedding function; `ChromaDefaultEmbeddings()` when None. Its name and
            dimensions are recorded with the collection.
        lexical_path: The SQLite catalogue file (or `":memory:"`, rebuilt from Chroma as its
            scopes are used), overriding the default. One file indexes one collection.
        mode: Retrieval mode of `search` and `invoking`; a `search` may pass its own.
        k: How many memories `search` returns and `invoking` injects at most; a `search` may
            pass its own.
        min_score: `search` and `invoking` leave out hits scoring below this; a `search` may
            pass its own (`min_score=0.0` keeps every hit). The default, 0.26, is
            measured for the default model, fusion and hybrid mode (`python -m
            memweave.bench.min_score`): the highest cut keeping 99% of the relevant top-5 hits of
            LoCoMo's development questions both in one store holding every conversation and
            in a fresh store per LoCoMo session (a new user's few memories). An unrelated
            question then injects nothing in 92% of cases in the large store (0.27 memories
            on average) and in all cases in the small ones. A question sharing no telling
            word with a memory keeps a score near its dense similarity when the dense match is
            strong (`FusionWeights.dense_floor`/`dense_sure`): "Do you know my name?" for
            "Hello, my name is Alice" scores 0.39, "What's my name?" 0.59. In `dense` mode
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
        collection: Deprecated: the exact collection name (as before); use `namespace`.
            Goes in 0.3.

    Raises:
        MissingDependency: chromadb is not installed (`pip install 'memweave[chroma]'`).
        ConfigurationError: Bad options, or both `namespace` and `collection`. On first use:
            the collection holds vectors of another embedder, or the catalogue file indexes
            another collection.

    Example:
        ```python
        async with VectorMemory("./memory") as memory:
            await memory.add("Ada prefers window seats.", user_id="ada")
            hits = await memory.search("Where does Ada like to sit?", user_id="ada")
        ```
    """

    source_id = "vector_memory"

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
        in the sibling Chroma collection `<namespace>_memory-history`. A `session_id` beside
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

        Each text is stored as `add` would with the message's id. A message whose id is
        remembered already with another text (edited in place) keeps the remembered text,
        with a warning logged, rather than failing the turn; to replace it, `delete` it
        and call `add`. Nothing is stored for a failed call (`error` set); a retry stores the
        turn. The extraction queue holds `extractor.queue_size` batches per event loop: when
        it is full, this waits for room (backpressure; nothing is dropped). `flush()` and
        `aclose()` wait for it; see `extraction_stats` for its failures.

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
        results = await asyncio.gather(
            *(
                self._submit(
                    message.text,
                    user_id=session.user_id,
                    session_id=session.id,
                    metadata=None,
                    id=message.id,
                    speaker=message.name or message.role,
                    role=message.role,
                    created_at=message.created_at,
                )
                for message in said
            )
        )
        for result in results:
            if isinstance(result, IdTaken):
                _LOG.warning(
                    "message %r of session %r is remembered with another text; kept that one",
                    result.id,
                    session.id,
                )
        if self._queue is not None and said:
            await self._queue.submit(Job(tuple(said), session.user_id, session.id))
