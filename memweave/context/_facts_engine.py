"""`FactStore`: the facts of one `VectorMemory`: consolidation, history, and deletes that record.

`remember` runs the two model steps of a `FactExtractor` and applies what they decide, with
these guards, each applied before anything is written:

- A new fact equal to a stored one (`normalize_fact`) or within `duplicate_threshold` of it
  changes nothing and never reaches the model; the stored fact becomes visible from the new
  session. An ADD or UPDATE whose text the scope already holds changes nothing either.
- Stored facts are shown to the model as `"0"`, `"1"`, ...; a decision naming any other id, or
  a memory already changed in this call, is refused.
- A DELETE of a stored fact that repeats one of the new facts is refused: re-stating a fact
  never deletes it.

Consolidations of one scope run one at a time (per event loop), so two batches of one user
never decide against the same stale facts. Every change is first recorded in the history, then
made; if making it fails, its entry is removed again and the error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from memweave._loops import PerLoop
from memweave.context._facts_models import MemoryEvent, MemoryVersion, RememberResult
from memweave.context._facts_queue import ExtractionQueue
from memweave.context._facts_store import (
    HistoryLog,
    attach_fact,
    cosine,
    doomed_facts,
    fact_record,
    fact_scope,
    replace_fact,
    similar_facts,
    write_fact,
)
from memweave.context._lexical import Row
from memweave.context._records import check_id, memory_key, read_scope
from memweave.context.embeddings import EmbeddingFunction
from memweave.context.facts import (
    AddDecision,
    DeleteDecision,
    FactDecision,
    FactExtractor,
    NoneDecision,
    normalize_fact,
)
from memweave.errors import ConfigurationError, InvalidArgument, MemweaveError
from memweave.llm import Usage
from memweave.messages import ChatMessage, validate_messages

__all__ = ["FactStore", "scope_of"]

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex

_LOG = logging.getLogger("memweave.context.facts")
_T = TypeVar("_T")


class _Runner(Protocol):
    def __call__(self, function: Callable[..., _T], *args: Any) -> Awaitable[_T]: ...


def scope_of(user_id: object, session_id: object, operation: str) -> tuple[str, str | None, str]:
    """The write scope of `remember` (the user's, else the session's), the session id, and the
    session facts become visible from (only within a user's scope; else empty)."""
    user = check_id("user_id", user_id)
    session = check_id("session_id", session_id)
    if user is not None:
        return "user:" + user, session, session or ""
    if session is not None:
        return "session:" + session, session, ""
    raise InvalidArgument("user_id", None, f"{operation} needs user_id or session_id to scope it")


@dataclass
class _Tally:
    """A `RememberResult` being built."""

    facts: tuple[str, ...] = ()
    changes: list[MemoryVersion] = field(default_factory=list)
    unchanged: int = 0
    rejected: int = 0
    malformed: int = 0
    usage: Usage = field(default_factory=Usage)

    def result(self) -> RememberResult:
        return RememberResult(
            facts=self.facts,
            changes=tuple(self.changes),
            unchanged=self.unchanged,
            rejected=self.rejected,
            malformed=self.malformed,
            usage=self.usage,
        )


@dataclass
class _Batch:
    """What one consolidation works on."""

    index: HybridIndex
    scope: str
    session: str | None
    visible: str
    sources: tuple[str, ...]
    when: float
    facts: list[tuple[str, list[float]]]
    tally: _Tally


class FactStore:
    """Facts of one memory: `remember` (needs an extractor), `history`, `delete`, `clear`.

    Args:
        extractor: The model steps; None for a memory that only reads and deletes facts.
        run: Runs a blocking function on the memory's worker, mapping store errors.
        open_index: Returns the memory's open index (naming the calling method).
        client: Returns the memory's Chroma client (once the index is open).
        collection: The memory's collection name.
        embedder: The memory's embedding function.
    """

    def __init__(
        self,
        extractor: FactExtractor | None,
        *,
        run: _Runner,
        open_index: Callable[[str], Awaitable[HybridIndex]],
        client: Callable[[], Any],
        collection: str,
        embedder: EmbeddingFunction,
    ) -> None:
        self.extractor = extractor
        self._run = run
        self._open = open_index
        self._client = client
        self._collection = collection
        self._embedder = embedder
        self._log: HistoryLog | None = None
        self._locks: PerLoop[weakref.WeakValueDictionary[str, asyncio.Lock]] = PerLoop(
            weakref.WeakValueDictionary
        )

    def background_queue(self) -> ExtractionQueue | None:
        """A queue that learns from batches with `remember`, off the caller's path, set up as
        the extractor says; None without an extractor."""
        extractor = self.extractor
        if extractor is None:
            return None
        return ExtractionQueue(
            lambda job: self.remember(job.messages, user_id=job.user_id, session_id=job.session_id),
            size=extractor.queue_size,
            attempts=extractor.retry_attempts,
            wait=extractor.retry_wait,
        )

    def _lock(self, scope: str) -> asyncio.Lock:
        locks = self._locks.get()
        lock = locks.get(scope)
        if lock is None:
            lock = locks[scope] = asyncio.Lock()
        return lock

    async def _history(self) -> HistoryLog | None:
        """The history collection, or None while it does not exist."""
        if self._log is None:
            client, name = self._client(), self._collection
            self._log = await self._run(lambda: HistoryLog.open(client, name, create=False))
        return self._log

    async def _writable_history(self) -> HistoryLog:
        """The history collection, created if need be."""
        if self._log is None:
            client, name = self._client(), self._collection
            self._log = await self._run(HistoryLog.create, client, name)
        return self._log

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = await self._embedder.embed(list(texts))
        if len(vectors) != len(texts):
            raise ConfigurationError(
                f"embedder {self._embedder.name!r} returned {len(vectors)} vectors "
                f"for {len(texts)} texts"
            )
        return [list(vector) for vector in vectors]

    # -- remember -----------------------------------------------------------------------------

    async def remember(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        user_id: str | None,
        session_id: str | None,
    ) -> RememberResult:
        """See `VectorMemory.remember`."""
        extractor = self.extractor
        if extractor is None:
            raise ConfigurationError(
                "remember needs a FactExtractor: VectorMemory(..., extractor=FactExtractor(client))"
            )
        batch = [ChatMessage.user(messages)] if isinstance(messages, str) else messages
        turns = [
            message
            for message in validate_messages(batch)
            if message.role in ("user", "assistant") and message.text.strip()
        ]
        scope, session, visible = scope_of(user_id, session_id, "remember")
        if not turns:
            return RememberResult()
        extraction = await extractor.extract(turns)
        tally = _Tally(
            facts=extraction.facts, usage=extraction.usage, malformed=int(extraction.malformed)
        )
        if not extraction.facts:
            return tally.result()
        async with self._lock(scope):
            index = await self._open("remember")
            facts = list(extraction.facts)
            vectors = await self._embed(facts)
            work = _Batch(
                index=index,
                scope=scope,
                session=session,
                visible=visible,
                sources=tuple(message.id for message in turns),
                when=max(message.created_at for message in turns).timestamp(),
                facts=list(zip(facts, vectors, strict=True)),
                tally=tally,
            )
            await self._consolidate(extractor, work)
        return tally.result()

    def _twin(self, text: str, hits: Sequence[tuple[Row, float]], threshold: float) -> Row | None:
        """The stored fact among `hits` that states `text` already, if any."""
        key = normalize_fact(text)
        for row, similarity in hits:
            if normalize_fact(row.text) == key or similarity >= threshold:
                return row
        return None

    async def _consolidate(self, extractor: FactExtractor, work: _Batch) -> None:
        facts = fact_scope(work.scope)
        texts = [text for text, _ in work.facts]
        vectors = [vector for _, vector in work.facts]
        similar = await self._run(similar_facts, work.index, facts, texts, vectors, extractor.top_k)
        candidates: dict[str, Row] = {}
        fresh: list[str] = []
        for text, hits in zip(texts, similar, strict=True):
            twin = self._twin(text, hits, extractor.duplicate_threshold)
            if twin is not None:
                work.tally.unchanged += 1
                if work.visible:
                    await self._run(attach_fact, work.index, twin, work.visible)
                continue
            fresh.append(text)
            for row, _ in hits:
                candidates.setdefault(row.key, row)
        if not fresh:
            return
        existing = list(candidates.values())
        plan = await extractor.decide(fresh, [row.text for row in existing])
        work.tally.usage += plan.usage
        if plan.malformed:
            work.tally.malformed += 1
            return
        # One decision per new fact or listed memory is all a reply needs; more are refused.
        limit = len(fresh) + len(existing)
        if len(plan.decisions) > limit:
            self._reject(work, f"{len(plan.decisions) - limit} decisions beyond the {limit} asked")
            work.tally.rejected += len(plan.decisions) - limit - 1
        await self._apply(extractor, work, plan.decisions[:limit], existing)

    async def _apply(
        self,
        extractor: FactExtractor,
        work: _Batch,
        decisions: Sequence[FactDecision],
        existing: Sequence[Row],
    ) -> None:
        listed = {str(n): row for n, row in enumerate(existing)}
        threshold = extractor.duplicate_threshold
        changed: set[str] = set()
        wanted = [
            " ".join(decision.text.split())
            for decision in decisions
            if not isinstance(decision, NoneDecision | DeleteDecision)
        ]
        texts = list(dict.fromkeys(text for text in wanted if text))
        vectors = dict(zip(texts, await self._embed(texts), strict=True))
        for decision in decisions:
            if isinstance(decision, NoneDecision):
                work.tally.unchanged += 1
                continue
            if isinstance(decision, AddDecision):
                text = " ".join(decision.text.split())
                if not text:
                    self._reject(work, "an ADD without text")
                    continue
                twin = await self._stored_twin(work, text, vectors[text], threshold, None)
                if twin is not None:
                    work.tally.unchanged += 1
                    continue
                await self._add(work, text, vectors[text])
                continue
            target = listed.get(decision.id.strip())
            if target is None:
                self._reject(work, f"{decision.event} of memory id {decision.id!r}, not listed")
                continue
            if target.id in changed:
                self._reject(work, f"a second change of memory {decision.id!r}")
                continue
            if isinstance(decision, DeleteDecision):
                if any(
                    normalize_fact(text) == normalize_fact(target.text)
                    or cosine(vector, target) >= threshold
                    for text, vector in work.facts
                ):
                    self._reject(work, f"a DELETE of memory {decision.id!r}, which is re-stated")
                    continue
                if await self._change(work, target, "DELETE", None, None):
                    changed.add(target.id)
                continue
            text = " ".join(decision.text.split())
            if not text:
                self._reject(work, "an UPDATE without text")
                continue
            if normalize_fact(text) == normalize_fact(target.text):
                work.tally.unchanged += 1
                continue
            if await self._stored_twin(work, text, vectors[text], threshold, target.id):
                # The scope holds the new text as another fact already.
                work.tally.unchanged += 1
                continue
            if await self._change(work, target, "UPDATE", text, vectors[text]):
                changed.add(target.id)

    def _reject(self, work: _Batch, what: str) -> None:
        work.tally.rejected += 1
        _LOG.warning("refused %s (scope %r, messages %s)", what, work.scope, list(work.sources))

    async def _stored_twin(
        self, work: _Batch, text: str, vector: list[float], threshold: float, other_than: str | None
    ) -> Row | None:
        [hits] = await self._run(
            similar_facts, work.index, fact_scope(work.scope), [text], [vector], 3
        )
        return self._twin(text, [hit for hit in hits if hit[0].id != other_than], threshold)

    def _entry(
        self,
        work: _Batch,
        memory_id: str,
        version: int,
        event: MemoryEvent,
        old: str | None,
        new: str | None,
    ) -> MemoryVersion:
        return MemoryVersion(
            memory_id=memory_id,
            version=version,
            event=event,
            time=datetime.now(UTC),
            old_text=old,
            new_text=new,
            source_message_ids=work.sources,
            session_id=work.session,
        )

    async def _recorded(
        self, scope: str, entries: list[MemoryVersion], change: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Record `entries`, then make the change; the entries are removed again when it fails
        (raising) or finds nothing to change (returning False)."""
        log = await self._writable_history()
        records = await self._run(log.append, scope, entries)
        try:
            done = await change()
        except Exception:
            await self._unrecord(log, records)
            raise
        if not done:
            await self._unrecord(log, records)
        return done

    async def _unrecord(self, log: HistoryLog, records: list[str]) -> None:
        try:
            await self._run(log.remove, records)
        except MemweaveError as exc:
            _LOG.warning("could not remove history entries %s of a failed change: %s", records, exc)

    async def _add(self, work: _Batch, text: str, vector: list[float]) -> None:
        item = fact_record(work.scope, text, created_at=work.when)
        entry = self._entry(work, item.id, 1, "ADD", None, text)

        async def write() -> bool:
            stored = await self._run(write_fact, work.index, item, vector, work.visible)
            return bool(stored == item.id)

        if await self._recorded(fact_scope(work.scope), [entry], write):
            work.tally.changes.append(entry)
        else:
            work.tally.unchanged += 1

    async def _change(
        self,
        work: _Batch,
        target: Row,
        event: MemoryEvent,
        text: str | None,
        vector: list[float] | None,
    ) -> bool:
        facts = fact_scope(work.scope)
        log = await self._writable_history()
        version = await self._run(log.count, facts, target.id) + 1
        entry = self._entry(work, target.id, version, event, target.text, text)

        async def change() -> bool:
            if text is None or vector is None:
                gone = await self._run(
                    work.index.delete, facts, None, (target.id, memory_key(facts, target.id))
                )
                return bool(gone)
            item = fact_record(work.scope, text, created_at=work.when, memory_id=target.id)
            return bool(await self._run(replace_fact, work.index, item, vector, work.visible))

        if await self._recorded(facts, [entry], change):
            work.tally.changes.append(entry)
            return True
        self._reject(work, f"a {event} of memory {target.id!r}, which no longer exists")
        return False

    # -- reads and deletes --------------------------------------------------------------------

    async def history(
        self, memory_id: str, *, user_id: str | None, session_id: str | None
    ) -> list[MemoryVersion]:
        """See `VectorMemory.history`."""
        mid = check_id("memory_id", memory_id, optional=False)
        scope, _ = read_scope(user_id, session_id, operation="history")
        await self._open("history")
        log = await self._history()
        if log is None:
            return []
        return await self._run(log.read, fact_scope(scope), mid)

    async def delete(self, scope: str, session: str | None, memory_id: str | None) -> int:
        """Delete one fact (`memory_id`) or every fact of the scope (None), visible from
        `session` when given, recording each deletion; returns how many were deleted."""
        facts = fact_scope(scope)
        memory = None if memory_id is None else (memory_id, memory_key(facts, memory_id))
        async with self._lock(scope):
            index = await self._open("delete" if memory_id is not None else "clear")
            rows = await self._run(doomed_facts, index, facts, session, memory)
            if not rows:
                return 0
            log = await self._writable_history()
            entries = []
            for row in rows:
                version = await self._run(log.count, facts, row.id) + 1
                entries.append(
                    MemoryVersion(
                        memory_id=row.id,
                        version=version,
                        event="DELETE",
                        time=datetime.now(UTC),
                        old_text=row.text,
                        session_id=session,
                    )
                )
            deleted = 0

            async def remove() -> bool:
                nonlocal deleted
                deleted = await self._run(index.delete, facts, session, memory)
                return deleted > 0

            await self._recorded(facts, entries, remove)
            return deleted

    async def count(self, scope: str, session: str | None) -> int:
        """How many facts the scope holds (visible from `session` when given)."""
        index = await self._open("count")
        return await self._run(index.count, fact_scope(scope), session)
