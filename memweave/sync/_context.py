"""Blocking long-term memory: `ContextProvider` and `VectorMemory`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from memweave._deprecation import warn_renamed
from memweave.context import base as _base
from memweave.context import vector as _vector
from memweave.context._render import CountsTextTokens
from memweave.context.base import Context
from memweave.context.facts import ExtractionStats, MemoryKind, MemoryVersion, RememberResult
from memweave.context.vector import MemoryHit, RetrievalMode
from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage
from memweave.session import Session
from memweave.sync._wrap import BlockingCloseable, mirrors

__all__ = ["ContextProvider", "VectorMemory"]


class ContextProvider(BlockingCloseable[_base.ContextProvider]):
    """Blocking face of a `memweave.context.ContextProvider`: `invoking` and `invoked` as plain
    calls. Pass it (or the async provider) in a blocking `Agent`'s `context_providers`.

    Args:
        provider: An async provider to drive that no event loop has used yet; from now on use
            it only through this object, which closes it.

    Raises:
        InvalidArgument: `provider` is not a `memweave.context.ContextProvider`.
    """

    def __init__(self, provider: _base.ContextProvider) -> None:
        if not isinstance(provider, _base.ContextProvider):
            raise InvalidArgument(
                "provider", provider, "expected a memweave.context.ContextProvider"
            )
        super().__init__(provider)

    @property
    def source_id(self) -> str:
        """Key of the provider's state in `Session.state`."""
        return self._async.source_id

    def invoking(self, session: Session, messages: Sequence[ChatMessage]) -> Context:
        """Return the context to add to the model call about to be made."""
        return self._call(self._async.invoking, session, messages)

    def invoked(
        self,
        session: Session,
        request_messages: Sequence[ChatMessage],
        response_messages: Sequence[ChatMessage],
        error: BaseException | None = None,
    ) -> None:
        """Learn from a finished model call."""
        self._call(self._async.invoked, session, request_messages, response_messages, error)


class VectorMemory(ContextProvider):
    """Blocking face of `memweave.context.VectorMemory`: long-term memory on Chroma with hybrid
    retrieval. Takes the same arguments.

    Example:
        ```python
        from memweave import sync

        with sync.VectorMemory("./memory") as memory:
            memory.add("Ada prefers window seats.", user_id="ada")
            hits = memory.search("Where does Ada like to sit?", user_id="ada")
        ```
    """

    _async: _vector.VectorMemory

    @mirrors(_vector.VectorMemory)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_vector.VectorMemory, args, kwargs)

    @property
    def collection_name(self) -> str:
        """The Chroma collection name."""
        return self._async.collection_name

    @property
    def namespace(self) -> str:
        """The name the memory's collections are named from."""
        return self._async.namespace

    @property
    def token_counter(self) -> CountsTextTokens:
        """The counter that budgets `invoking`'s instructions."""
        return self._async.token_counter

    def add(
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
        """Remember `text`; return the id of the memory holding it (idempotent)."""
        return self._call(
            self._async.add,
            text,
            user_id=user_id,
            session_id=session_id,
            metadata=metadata,
            id=id,
            speaker=speaker,
            role=role,
            created_at=created_at,
        )

    def search(
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
        """Return the `k` memories of the scope most similar to `query` scoring at least
        `min_score`, best first; `None` takes the memory's own `k` and `min_score`."""
        return self._call(
            self._async.search,
            query,
            user_id=user_id,
            session_id=session_id,
            k=k,
            mode=mode,
            min_score=min_score,
            kind=kind,
        )

    def delete(
        self,
        id: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> bool:
        """Forget the memory `id` of the scope; return whether it existed."""
        return self._call(self._async.delete, id, user_id=user_id, session_id=session_id, kind=kind)

    def clear(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Forget every memory of the scope; return how many were deleted."""
        return self._call(self._async.clear, user_id=user_id, session_id=session_id, kind=kind)

    def count_memories(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Return how many memories the scope holds."""
        return self._call(
            self._async.count_memories, user_id=user_id, session_id=session_id, kind=kind
        )

    def count(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        kind: MemoryKind | None = None,
    ) -> int:
        """Deprecated name of `count_memories` (goes in 0.3)."""
        warn_renamed("VectorMemory.count()", "VectorMemory.count_memories()")
        return self.count_memories(user_id=user_id, session_id=session_id, kind=kind)

    def remember(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> RememberResult:
        """Learn the facts `messages` state, consolidated with the scope's (needs an extractor)."""
        return self._call(self._async.remember, messages, user_id=user_id, session_id=session_id)

    def history(
        self, memory_id: str, *, user_id: str | None = None, session_id: str | None = None
    ) -> list[MemoryVersion]:
        """Return the changes of fact `memory_id` of the scope, oldest first."""
        return self._call(self._async.history, memory_id, user_id=user_id, session_id=session_id)

    def flush(self) -> None:
        """Wait until the queued adds and background fact extraction are done."""
        self._call(self._async.flush)

    @property
    def extraction_stats(self) -> ExtractionStats:
        """Counters of the background fact extraction."""
        return self._async.extraction_stats
