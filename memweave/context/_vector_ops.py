"""The direct API of `VectorMemory`: add, search, delete, clear and count the memories of a
scope."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import JsonValue

from memweave._deprecation import warn_renamed
from memweave.context._facts_models import MemoryKind
from memweave.context._records import check_id, memory_key, new_memory, read_scope
from memweave.context._vector_core import VectorCore
from memweave.context._vector_parts import (
    MemoryHit,
    RetrievalMode,
    check_kind,
    check_search,
    count_kinds,
    hit_of,
    search_kinds,
)
from memweave.context._vector_writes import Add, AddResult, IdTaken
from memweave.errors import InvalidArgument

__all__ = ["VectorOps"]


class VectorOps(VectorCore):
    """The direct API of `VectorMemory` (see it for the arguments); not used on its own."""

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
        """Remember `text`; returns the memory's id: `id` when given, else a fresh one (or the
        id of the memory already holding the text).

        Idempotent: adding again an `id` its scope holds with the same text stores nothing
        and returns `id` (safe retries); with another text it raises `InvalidArgument` and
        stores nothing (memories are never rewritten in place: `delete` the id first). A scope
        holds each text once: adding a text it holds under another id stores no second
        memory; with `id` given, `id` becomes another name of that memory (returned here,
        accepted by `delete`, which then forgets the memory under all its names), while
        hits carry the id it was first stored under; without `id`, the stored memory's id is
        returned. If the stored memory is of another session of the user, it becomes visible
        from this session too (`search`, `count_memories` and `clear` with this `session_id`
        find it); its `session_id`, metadata and time stay the first ones. Memories of one
        session are linked in the order they are added, and each is indexed with its
        neighbours and its date. Concurrent calls are written together, in call order, in
        one batch.

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
            InvalidArgument: A bad argument, neither `user_id` nor `session_id`, or an `id`
                its scope holds with another text (`.name == "id"`).
            BackendUnavailable: Chroma or SQLite failed.
            ModelError: The embedder failed.
            ProviderClosed: The memory was closed.
        """
        result = await self._submit(
            text,
            user_id=user_id,
            session_id=session_id,
            metadata=metadata,
            id=id,
            speaker=speaker,
            role=role,
            created_at=created_at,
        )
        if isinstance(result, IdTaken):
            raise InvalidArgument(
                "id",
                result.id,
                f"its scope holds it with another text ({_shorten(result.stored_text)}); "
                "delete it first to store a new text under it, or pass another id",
            )
        return result

    async def _submit(
        self,
        text: str,
        *,
        user_id: str | None,
        session_id: str | None,
        metadata: Mapping[str, JsonValue] | None,
        id: str | None,
        speaker: str | None,
        role: str | None,
        created_at: datetime | None,
    ) -> AddResult:
        """Check an add and queue it; concurrent adds are written in batches."""
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
        return await self._adds.submit(Add(item, named=id is not None))

    async def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        min_score: float | None = None,
        kind: MemoryKind | None = None,
    ) -> list[MemoryHit]:
        """Return the `k` memories of the scope most similar to `query`, best first.

        An exact match (same text, ignoring case and whitespace) ranks first with score 1.
        Turns and facts are scored alike and merged by score. `k`, `mode` and `min_score`
        default to the memory's own (`VectorMemory(k=5, min_score=0.26, mode="hybrid")`),
        as `invoking` uses them; pass `min_score=0.0` for every hit, however weak.

        Args:
            query: The text to search for.
            user_id: Search this user's memories.
            session_id: With `user_id`, only that session's (its turns, and the facts learned
                or confirmed in it); alone, the memories written without a user in that session.
            k: How many hits at most (1-1000); the memory's `k` when None.
            mode: `dense`, `lexical` or `hybrid`; the memory's `mode` when None.
            min_score: Leave out hits scoring below this; the memory's `min_score` when None.
            kind: `"turn"` or `"fact"` for one kind only; None for both.

        Raises:
            InvalidArgument: A bad argument, or neither `user_id` nor `session_id`.
            ProviderClosed: The memory was closed.
        """
        self._check_open("search")
        scope, session = read_scope(user_id, session_id, operation="search")
        kinds = check_kind(kind)
        k = self.k if k is None else k
        min_score = self.min_score if min_score is None else min_score
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
        `kind` None looks for a turn, then a fact. `id` may be any name `add` gave the memory;
        the memory is forgotten under all of them. A deleted fact keeps its history, which
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

    async def count_memories(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Return how many memories the scope holds (of one `kind`, if given); a memory with
        several names (see `add`) counts once. Waits for the adds queued before it.

        Raises:
            InvalidArgument: A bad argument, or neither `user_id` nor `session_id`.
            ProviderClosed: The memory was closed.
        """
        self._check_open("count_memories")
        scope, session = read_scope(user_id, session_id, operation="count_memories")
        kinds = check_kind(kind)
        await self._flush()
        index = await self._open("count_memories")
        return await self._run(count_kinds, index, scope, session, kinds)

    async def count(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Deprecated name of `count_memories` (goes in 0.3)."""
        warn_renamed("VectorMemory.count()", "VectorMemory.count_memories()")
        return await self.count_memories(user_id=user_id, session_id=session_id, kind=kind)


def _shorten(text: str, limit: int = 60) -> str:
    """`text` quoted, cut to about `limit` characters for an error message."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
