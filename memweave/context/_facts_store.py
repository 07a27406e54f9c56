"""Where facts and their history are kept: blocking operations run on vector memory's worker.

Facts live in the memory's own Chroma collection and catalogue, as memories of a scope of their
own: the facts of scope `user:ada` are in scope `fact:user:ada` (no turn scope starts with
`fact:`, so the two never mix, and a fact's text never collides with a turn's). A fact has no
home session, so it is not linked to neighbouring turns or facts; the sessions it was learned
or confirmed in are sessions it is visible from (as `add` does for a text said again).

History lives in a sibling collection, `<collection>-history` (a longer name is shortened with
a hash), one record per change: the `MemoryVersion` as JSON in the document, and its scope,
memory id and version as metadata to filter on, with a constant one-number vector. History is
written before the change it records and removed again if the change fails, so every change
made has its entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from memweave.context._facts_models import MemoryVersion
from memweave.context._lexical import NewMemory, Row
from memweave.context._records import memory_key
from memweave.errors import ConfigurationError

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex

__all__ = [
    "FACT_PREFIX",
    "HistoryLog",
    "attach_fact",
    "cosine",
    "doomed_facts",
    "fact_record",
    "fact_scope",
    "history_collection_name",
    "replace_fact",
    "similar_facts",
    "write_fact",
]

_LOG = logging.getLogger("memweave.context.facts")

FACT_PREFIX = "fact:"
"""What a fact scope starts with; a turn scope starts with `user:` or `session:`."""

_META_KIND = "memweave:kind"
_KIND = "memory-history"
_META_OF = "memweave:history-of"
_MAX_NAME = 512


def fact_scope(scope: str) -> str:
    """The scope holding the facts of turn scope `scope`."""
    return FACT_PREFIX + scope


def fact_record(
    scope: str, text: str, *, created_at: float, memory_id: str | None = None
) -> NewMemory:
    """A fact of turn scope `scope` to store, with no home session: a new fact (fresh id), or
    the new text of fact `memory_id`.

    The new text of a fact gets a Chroma key of its own (its id stays): another catalogue of
    the collection then sees the old record go and the new one come, as for any delete and
    add, rather than keeping the old text under an unchanged key.
    """
    facts = fact_scope(scope)
    mid = memory_id or os.urandom(16).hex()
    key = memory_key(facts, mid if memory_id is None else f"{mid}\x00{os.urandom(8).hex()}")
    return NewMemory(
        key=key,
        id=mid,
        scope=facts,
        session_id="",
        text=text,
        speaker=None,
        role=None,
        created_at=created_at,
        metadata={},
    )


def cosine(vector: Sequence[float], row: Row) -> float:
    """Cosine similarity of `vector` to the stored unit vector of `row`."""
    import numpy as np

    from memweave.context._fusion import unit

    stored = np.frombuffer(row.vector, dtype="<f4")
    return float(np.dot(unit(vector), stored))


def similar_facts(
    index: HybridIndex,
    scope: str,
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    k: int,
) -> list[list[tuple[Row, float]]]:
    """For each text, the `k` facts of fact scope `scope` most like it (hybrid ranking), each
    with its cosine similarity to the text's vector."""
    out: list[list[tuple[Row, float]]] = []
    for text, vector in zip(texts, vectors, strict=True):
        found = index.search(scope, None, text, vector, k=k, mode="hybrid")
        out.append([(row, cosine(vector, row)) for row, _ in found])
    return out


def _attach(index: HybridIndex, item: NewMemory, sessions: Sequence[str]) -> None:
    wanted = sorted({session for session in sessions if session})
    if wanted:
        index.attach([dataclasses.replace(item, session_id=session) for session in wanted])


def write_fact(index: HybridIndex, item: NewMemory, vector: Sequence[float], session: str) -> str:
    """Store a new fact, visible from `session` too (when not empty); returns the id holding
    it (another fact's, if its scope gained the same text meanwhile)."""
    [stored] = index.write([item], [vector])
    if stored == item.id:
        _attach(index, item, [session])
    return stored


def attach_fact(index: HybridIndex, row: Row, session: str) -> None:
    """Make the stored fact `row` visible from `session` too."""
    item = NewMemory(
        key=row.key,
        id=row.id,
        scope=row.scope,
        session_id=session,
        text=row.text,
        speaker=None,
        role=None,
        created_at=row.created_at,
        metadata={},
    )
    _attach(index, item, [session])


def replace_fact(
    index: HybridIndex, item: NewMemory, vector: Sequence[float], session: str
) -> bool:
    """Give the fact `item.id` the text (and key) of `item`, keeping its id and sessions;
    returns False when it no longer exists.

    Inside one catalogue transaction: the new record is written to Chroma, then the old one
    deleted; if that fails, the catalogue rolls back and the new record is deleted again (if
    Chroma lets it, else a later catch-up finds it as a second fact of the same id).
    """
    with index.lexical.transaction():
        doomed = index.lexical.doomed(item.scope, None, (item.id, item.key))
        if not doomed:
            return False
        sessions: list[str] = [session]
        stale: list[str] = []
        for seq, keys in doomed.items():
            sessions.extend(index.lexical.sessions_of(seq))
            stale.extend(keys)
        index.lexical.remove(doomed)
        index.write([item], [vector])
        try:
            index.collection.delete(ids=stale)
        except BaseException:
            # The catalogue rolls back to the old text; take the new record back too.
            with contextlib.suppress(Exception):
                index.collection.delete(ids=[item.key])
            raise
        _attach(index, item, sessions)
    return True


def doomed_facts(
    index: HybridIndex, scope: str, session: str | None, memory: tuple[str, str] | None
) -> list[Row]:
    """The facts `index.delete(scope, session, memory)` would delete now."""
    index.catch_up(scope)
    doomed = index.lexical.doomed(scope, session, memory)
    rows = index.lexical.rows(doomed)
    return [rows[seq] for seq in sorted(rows)]


def history_collection_name(collection: str) -> str:
    """The sibling collection holding the history of facts in `collection`."""
    name = f"{collection}-history"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.blake2b(collection.encode(), digest_size=8).hexdigest()
    return f"{collection[: _MAX_NAME - 26]}-{digest}-history"


class HistoryLog:
    """The history of facts in one Chroma collection; every method blocks."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self._last = 0

    @classmethod
    def open(cls, client: Any, memory_collection: str, *, create: bool) -> HistoryLog | None:
        """Open (or, with `create`, make) the history of `memory_collection`; None when it does
        not exist and `create` is false.

        Raises:
            ConfigurationError: A collection of that name exists that is no memweave history.
        """
        import chromadb.errors

        name = history_collection_name(memory_collection)
        try:
            collection = client.get_collection(name, embedding_function=None)
        except chromadb.errors.NotFoundError:
            if not create:
                return None
            try:
                collection = client.create_collection(
                    name,
                    metadata={_META_KIND: _KIND, _META_OF: memory_collection},
                    embedding_function=None,
                )
            except chromadb.errors.ChromaError:
                # Another process created it in between; check what it recorded.
                collection = client.get_collection(name, embedding_function=None)
        if (collection.metadata or {}).get(_META_KIND) != _KIND:
            raise ConfigurationError(
                f"Chroma collection {name!r} holds no memweave fact history; give the memory "
                "collection another name"
            )
        return cls(collection)

    @classmethod
    def create(cls, client: Any, memory_collection: str) -> HistoryLog:
        """Open the history of `memory_collection`, making it if it does not exist yet.

        Raises:
            ConfigurationError: A collection of that name exists that is no memweave history.
        """
        log = cls.open(client, memory_collection, create=True)
        if log is None:  # pragma: no cover - open(create=True) makes it or raises
            raise ConfigurationError(f"could not create the history of {memory_collection!r}")
        return log

    @staticmethod
    def _where(scope: str, memory_id: str) -> dict[str, Any]:
        # Values sit under `$eq`, so an id shaped like an operator is only data.
        return {"$and": [{"scope": {"$eq": scope}}, {"memweave_id": {"$eq": memory_id}}]}

    def count(self, scope: str, memory_id: str) -> int:
        """How many changes fact `memory_id` of `scope` has recorded."""
        return len(self.collection.get(where=self._where(scope, memory_id), include=[])["ids"])

    def append(self, scope: str, entries: Sequence[MemoryVersion]) -> list[str]:
        """Record changes of facts of `scope`; returns their record ids (for `remove`)."""
        if not entries:
            return []
        ids: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for entry in entries:
            # A time stamp that only grows here orders a fact's changes made within one tick.
            stamp = max(time.time_ns(), self._last + 1)
            self._last = stamp
            digest = hashlib.blake2b(digest_size=20)
            digest.update(memory_key(scope, entry.memory_id).encode())
            digest.update(os.urandom(16))
            ids.append("h" + digest.hexdigest())
            metadatas.append(
                {
                    "scope": scope,
                    "memweave_id": entry.memory_id,
                    "version": entry.version,
                    "stamp": stamp,
                }
            )
        self.collection.add(
            ids=ids,
            documents=[entry.model_dump_json() for entry in entries],
            metadatas=metadatas,
            embeddings=[[1.0] for _ in entries],
        )
        return ids

    def remove(self, ids: Sequence[str]) -> None:
        """Drop records written by `append` (their change did not happen)."""
        if ids:
            self.collection.delete(ids=list(ids))

    def read(self, scope: str, memory_id: str) -> list[MemoryVersion]:
        """The changes of fact `memory_id` of `scope`, oldest first, numbered from 1.

        An entry that cannot be decoded is left out with a warning.
        """
        got = self.collection.get(
            where=self._where(scope, memory_id), include=["documents", "metadatas"]
        )
        found: list[tuple[int, int, str, MemoryVersion]] = []
        for record_id, document, metadata in zip(
            got["ids"], got["documents"], got["metadatas"], strict=True
        ):
            try:
                entry = MemoryVersion.model_validate_json(document or "")
            except ValidationError:
                _LOG.warning(
                    "left out history entry %r of memory %r: it cannot be decoded",
                    record_id,
                    memory_id,
                )
                continue
            meta = metadata or {}
            stamp = meta.get("stamp")
            found.append((entry.version, stamp if isinstance(stamp, int) else 0, record_id, entry))
        found.sort(key=lambda item: item[:3])
        return [
            entry.model_copy(update={"version": n})
            for n, (_, _, _, entry) in enumerate(found, start=1)
        ]
