"""The blocking core of vector memory: a Chroma collection beside the SQLite catalogue.

`HybridIndex` owns both stores and runs on one worker thread of `VectorMemory`. Chroma is the
source of truth: each record carries, besides its vector and text, what the catalogue needs to
rebuild its row (ids, scope, sessions, speaker, role, time, metadata, write order). The
catalogue is an index of it, kept caught up one scope (user) at a time: on the scope's first
use, before each later use whenever Chroma's record count has moved while the catalogue does
not account for every record (another process wrote or deleted through the same Chroma), and
for any dense hit it does not know. A catch-up reads the scope's keys only, never the whole
collection. So several processes may share one Chroma (a server, or one client) with a
catalogue each, or share one catalogue file on one host.

Writes go to Chroma first and are then committed to SQLite; deletes hold the catalogue's write
lock, delete from Chroma, then from SQLite. So a catalogue row always has its Chroma record
(unless it was deleted elsewhere, which the next catch-up notices), and a crash in between
leaves at most a record the catalogue catches up on. Reads take candidates from both indexes and
score them exactly (`memweave.context._fusion`). The dense candidates of a view of at most
`EXACT_VIEW` memories are found by exact cosine over the catalogue's copies of their vectors; a
larger view asks Chroma for its nearest neighbours, on a second thread while the catalogue is
read on the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from typing import Any, Literal

import numpy as np

from memweave.context._fusion import (
    DEFAULT_FUSION,
    FusionWeights,
    Vector,
    dense_parts,
    fuse,
    mix_dense,
    named_speakers,
    ranked,
    unit,
)
from memweave.context._lexical import LexicalStore, Link, NewMemory, Row, query_terms
from memweave.errors import ConfigurationError
from memweave.providers._chroma_client import get_or_create_collection

__all__ = ["EXACT_VIEW", "HybridIndex", "Mode", "candidate_pool", "open_collection"]

Mode = Literal["dense", "lexical", "hybrid"]

_LOG = logging.getLogger(__name__)

_META_EMBEDDER = "memweave:embedder"
_META_DIMENSIONS = "memweave:dimensions"
_META_SCHEMA = "memweave:schema"
_COLLECTION_SCHEMA = 1
_FETCH = 500
EXACT_VIEW = 2_000
"""Most memories a search view may hold for its dense candidates to be found by exact cosine
over the catalogue's vectors; a larger view asks Chroma's index (whose filtered search costs
grow with the whole collection, about 1 ms per 1,000 records on chromadb 1.5)."""
_CAUGHT_UP_SCOPES = 10_000
"""Scopes whose last catch-up `HybridIndex` remembers; one forgotten is caught up again."""
_FIELDS = "memweave"
"""The metadata key of a record's JSON fields: text, time, write order, speaker, role,
metadata."""
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY (primary codes).
_TOLERATED = frozenset({5, 6, 8})


def open_collection(client: Any, name: str, embedder: str, dimensions: int) -> Any:
    """Get or create the collection, recording the embedder; refuse one made with another."""
    wanted = {
        _META_EMBEDDER: embedder,
        _META_DIMENSIONS: dimensions,
        _META_SCHEMA: _COLLECTION_SCHEMA,
    }
    collection, created = get_or_create_collection(client, name, wanted)
    if created:
        return collection
    metadata = collection.metadata or {}
    if _META_EMBEDDER not in metadata:
        raise ConfigurationError(
            f"Chroma collection {name!r} was not created by memweave's VectorMemory "
            "(it records no embedder); use another collection name"
        )
    found = (metadata.get(_META_EMBEDDER), metadata.get(_META_DIMENSIONS))
    if found != (embedder, dimensions):
        raise ConfigurationError(
            f"Chroma collection {name!r} holds vectors of embedder {found[0]!r} "
            f"({found[1]} dimensions), not {embedder!r} ({dimensions} dimensions); open it with "
            "that embedder, or use another collection"
        )
    return collection


def candidate_pool(k: int) -> int:
    """How many candidates a search for `k` memories takes from each index."""
    return max(4 * k, 40)


def _where(scope: str, session_id: str | None, extra_ids: Sequence[str]) -> dict[str, Any]:
    # Values sit under an explicit `$eq` or `$in`, so an id shaped like an operator is only data.
    if session_id is None:
        return {"scope": {"$eq": scope}}
    session: dict[str, Any] = {"session_id": {"$eq": session_id}}
    if extra_ids:
        session = {"$or": [session, {"memweave_id": {"$in": list(extra_ids)}}]}
    return {"$and": [{"scope": {"$eq": scope}}, session]}


class HybridIndex:
    """A Chroma collection and a `LexicalStore` kept in step; every method blocks."""

    def __init__(
        self,
        collection: Any,
        lexical: LexicalStore,
        *,
        dimensions: int,
        close_client: Callable[[], None] | None = None,
        fusion: FusionWeights = DEFAULT_FUSION,
    ) -> None:
        self.collection = collection
        self.lexical = lexical
        self.dimensions = dimensions
        self.fusion = fusion
        self._close_client = close_client
        self._last_order = 0
        # The thread Chroma is searched on during a search (see `search`), made on first use.
        self._reader: futures.ThreadPoolExecutor | None = None
        # Chroma's record count when each scope was last caught up, least recent first.
        self._caught_up: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        """Close the SQLite connection, and the Chroma client if this index made it."""
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        try:
            self.lexical.close()
        finally:
            if self._close_client is not None:
                self._close_client()

    # -- catching up with Chroma ----------------------------------------------------------------

    def catch_up(self, *scopes: str) -> None:
        """Bring the scopes' part of the catalogue in line with Chroma: add the records of
        each scope it lacks, drop those Chroma no longer holds.

        Only the scopes' keys are read (Chroma's filtered `get`), never every id of the
        collection other writers fill. A scope is caught up on its first use by this index,
        and again whenever Chroma's record count has moved since it last was while the
        catalogue does not account for every record (another writer shares the collection).
        A read-only or busy catalogue file is left as it is (with a warning): reads go on with
        what it holds.
        """
        total = self.collection.count()
        in_step = total == self.lexical.catalogued()
        for scope in scopes:
            last = self._caught_up.get(scope)
            if last is None or not (in_step or last == total):
                self._catch_up_scope(scope)
            self._caught_up[scope] = total
            self._caught_up.move_to_end(scope)
        while len(self._caught_up) > _CAUGHT_UP_SCOPES:
            self._caught_up.popitem(last=False)

    def _catch_up_scope(self, scope: str) -> None:
        # The write lock is taken before Chroma's keys are read: a writer sharing this file
        # commits its row only after its Chroma write, so no row is missing from that list
        # unless it was deleted.
        with _tolerated(self.lexical.path, "catch up with Chroma"), self.lexical.transaction():
            stored = set(self.collection.get(where={"scope": {"$eq": scope}}, include=[])["ids"])
            self.lexical.forget_keys(self.lexical.scope_keys(scope) - stored)
            _, unknown = self.lexical.seqs_by_key(stored)
            self._adopt(sorted(unknown))

    def _adopt(self, keys: Sequence[str]) -> None:
        """Fetch these Chroma records and catalogue them, in the order they were written."""
        found: list[tuple[int, NewMemory, bytes]] = []
        unusable: list[str] = []
        for start in range(0, len(keys), _FETCH):
            got = self.collection.get(
                ids=list(keys[start : start + _FETCH]),
                include=["documents", "metadatas", "embeddings"],
            )
            for key, document, metadata, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            ):
                stored = _from_chroma(key, document, metadata or {})
                if stored is None or len(vector) != self.dimensions:
                    unusable.append(key)
                    continue
                record, rank = stored
                found.append((rank, record, unit(vector).astype("<f4").tobytes()))
        found.sort(key=lambda entry: (entry[0], entry[1].created_at, entry[1].key))
        with self.lexical.transaction():
            self.lexical.ignore(unusable)
            self.lexical.adopt(
                [record for _, record, _ in found], [vector for _, _, vector in found]
            )
        if unusable:
            _LOG.warning("ignored %d Chroma records that are no memweave memory", len(unusable))

    # -- writes -------------------------------------------------------------------------------

    def lookup(self, items: Sequence[NewMemory]) -> list[str | None]:
        """See `LexicalStore.lookup`."""
        return self.lexical.lookup(items)

    def write(self, items: Sequence[NewMemory], vectors: Sequence[Sequence[float]]) -> list[str]:
        """Store the items with their vectors; returns the id holding each item."""
        if not items:
            return []
        for vector in vectors:
            if len(vector) != self.dimensions:
                raise ConfigurationError(
                    f"the embedder returned a vector of {len(vector)} floats; this collection "
                    f"holds {self.dimensions}"
                )
        embeddings = np.stack([unit(vector) for vector in vectors]).astype("<f4")
        # A write-order stamp, so a catalogue rebuilt from Chroma links turns as they were.
        first = max(time.time_ns(), self._last_order + 1)
        self._last_order = first + len(items) - 1
        self.collection.upsert(
            ids=[item.key for item in items],
            embeddings=embeddings,
            metadatas=[_to_chroma(item, first + n) for n, item in enumerate(items)],
        )
        return self.lexical.insert(items, [vector.tobytes() for vector in embeddings])

    def attach(self, items: Sequence[NewMemory]) -> None:
        """Make the memory holding each item's text visible from the item's session too."""
        with self.lexical.transaction():
            changed = self.lexical.attach(items)
            if changed:
                self.collection.update(
                    ids=list(changed),
                    metadatas=[{"memweave_sessions": json.dumps(s)} for s in changed.values()],
                )

    def delete(self, scope: str, session_id: str | None, memory: tuple[str, str] | None) -> int:
        """Delete one memory (`(id, key)`) or a scope's memories from both stores; returns
        how many."""
        self.catch_up(scope)
        with self.lexical.transaction():
            doomed = self.lexical.doomed(scope, session_id, memory)
            keys = [key for group in doomed.values() for key in group]
            for start in range(0, len(keys), 1000):
                self.collection.delete(ids=keys[start : start + 1000])
            self.lexical.remove(doomed)
        return len(doomed)

    # -- reads --------------------------------------------------------------------------------

    def count(self, scope: str, session_id: str | None) -> int:
        """Number of memories in the scope."""
        self.catch_up(scope)
        return self.lexical.count(scope, session_id)

    def search(
        self,
        scope: str,
        session_id: str | None,
        query: str,
        query_vector: Sequence[float] | None,
        *,
        k: int,
        mode: Mode,
        fusion: FusionWeights | None = None,
    ) -> list[tuple[Row, float]]:
        """The best `k` memories of the scope for `query`, with their scores, best first.

        `fusion` overrides the index's own weights for this search. Dense candidates come
        from the catalogue's vectors (a view of at most `EXACT_VIEW` memories) or from
        Chroma's index, asked on a second thread while the catalogue is read on this one.
        """
        weights = self.fusion if fusion is None else fusion
        pool = candidate_pool(k)
        vector: Vector | None = None
        if mode != "lexical":
            if query_vector is None:
                raise ConfigurationError(f"{mode} search needs a query vector")
            vector = unit(query_vector)
        nearest: Future[list[str]] | None = None
        closest: list[int] | None = None
        try:
            if vector is not None and self.lexical.count(scope, session_id) > EXACT_VIEW:
                nearest, extra_ids = self._ask_nearest(scope, session_id, vector, pool)
            self.catch_up(scope)
            if nearest is not None and session_id is not None and vector is not None:
                now = self.lexical.extra_ids(scope, session_id)
                if set(now) != set(extra_ids):
                    # Catching up made more memories visible from the session: ask again.
                    futures.wait([nearest])
                    nearest, extra_ids = self._ask_nearest(scope, session_id, vector, pool)
            if vector is not None and nearest is None:
                closest = self._closest(scope, session_id, vector, pool)
            exact = self.lexical.exact(scope, session_id, query)
            lexical: dict[int, float] = {}
            if mode != "dense":
                terms = query_terms(query)
                lexical = self.lexical.search(
                    scope, session_id, terms, pool, weights=weights.bm25_weights
                )
            dense: dict[int, float] = {}
            rows: dict[int, Link] = {}
            if vector is not None:
                if closest is None:
                    assert nearest is not None, "a dense search asks Chroma or the catalogue"
                    closest = self._seqs_of(scope, nearest.result())
                view = (scope, session_id)
                parts, rows = self._dense(view, closest, vector, set(lexical))
                dense = mix_dense(parts, weights.window)
        finally:
            if nearest is not None:
                # Nothing of a search runs on after it, even when it failed.
                futures.wait([nearest])
        scores: dict[int, float]
        if mode == "dense":
            scores = dense
        elif mode == "lexical":
            scores = lexical
        else:
            named = self._named(query, set(dense) | set(lexical), rows, weights)
            scores = fuse(dense, lexical, named, weights)
        for seq in exact:
            scores[seq] = 1.0
        top = ranked(scores, exact, k)
        found = self.lexical.rows(top)
        return [(found[seq], scores[seq]) for seq in top if seq in found]

    def _ask_nearest(
        self, scope: str, session_id: str | None, query: Vector, pool: int
    ) -> tuple[Future[list[str]], list[str]]:
        """Start Chroma's search for the `pool` memories nearest `query`, on the reader
        thread; returns its future (the Chroma keys, nearest first) and the ids of the memories
        visible from the session without it being their home, which the search includes."""
        extra_ids = [] if session_id is None else self.lexical.extra_ids(scope, session_id)
        where = _where(scope, session_id, extra_ids)
        if self._reader is None:
            self._reader = futures.ThreadPoolExecutor(1, thread_name_prefix="memweave-chroma")
        return self._reader.submit(self._nearest, query, pool, where), extra_ids

    def _nearest(self, query: Vector, pool: int, where: dict[str, Any]) -> list[str]:
        # Ids only: scores are computed from the catalogue's copies of the vectors.
        result = self.collection.query(
            query_embeddings=[query], n_results=pool, where=where, include=[]
        )
        return list(result["ids"][0])

    def _named(
        self, query: str, candidates: set[int], rows: dict[int, Link], weights: FusionWeights
    ) -> set[int]:
        """The candidates whose speaker the query names (none when the signal weighs 0).

        `rows` holds what the dense search read of the candidates; the rest are read here.
        Every candidate is a memory of the search's view, so a name is looked for among their
        speakers alone.
        """
        if weights.speaker <= 0 or not candidates:
            return set()
        rows.update(self.lexical.links(candidates - rows.keys()))
        spoken = {seq: rows[seq][3] for seq in candidates if seq in rows}
        names = named_speakers(query, {speaker for speaker in spoken.values() if speaker})
        return {seq for seq, speaker in spoken.items() if speaker in names}

    def _closest(self, scope: str, session_id: str | None, query: Vector, pool: int) -> list[int]:
        """The `pool` memories of the view nearest `query`, by exact cosine over the
        catalogue's copies of their vectors (best first, ties by write order)."""
        seqs = self.lexical.scope_seqs(scope, session_id)
        links = self.lexical.links(seqs)
        known = [seq for seq in seqs if seq in links]
        if not known:
            return []
        scores = np.stack([links[seq][2] for seq in known]) @ query
        order = np.lexsort((np.arange(len(known)), -scores))[:pool]
        return [known[int(n)] for n in order]

    def _seqs_of(self, scope: str, keys: list[str]) -> list[int]:
        """The memories of Chroma's hits; a hit the catalogue does not know catches the scope
        up first."""
        seqs, unknown = self.lexical.seqs_by_key(keys)
        if unknown:
            # Written through Chroma by another process since the scope was caught up, though
            # the record count did not move (a delete beside it): catch the scope up again.
            self._caught_up.pop(scope, None)
            self.catch_up(scope)
            seqs, _ = self.lexical.seqs_by_key(keys)
        return [seqs[key] for key in keys if key in seqs]

    def _dense(
        self, view: tuple[str, str | None], closest: list[int], query: Vector, extra: set[int]
    ) -> tuple[dict[int, tuple[float, float]], dict[int, Link]]:
        """`(own, window)` similarities of the `closest` memories, of their neighbours in the
        view `(scope, session_id)`, and of `extra`; and what was read of them and their
        neighbours."""
        # Only links and vectors are read here, not whole rows: a search scores hundreds.
        nearest = set(closest)
        rows = self.lexical.links(nearest | extra)
        candidates = set(rows)
        beside = _sides(rows, nearest) - candidates
        if view[1] is not None:
            # A memory visible from the session through `memory_sessions` has its
            # neighbours in its home session: they lend it their vectors, not their hits.
            beside = self.lexical.visible(*view, beside)
        # Neighbours join in the seq order of the memory they flank: the set's order is the
        # order `dense_parts` stacks vectors in, which float32 sums depend on in their last bits.
        for seq in sorted(nearest & rows.keys()):
            candidates.update(side for side in rows[seq][:2] if side in beside)
        # The candidates still unread, with the neighbours of those read: then theirs.
        wanted = candidates | _sides(rows, candidates)
        rows.update(self.lexical.links(wanted - rows.keys()))
        rows.update(self.lexical.links(_sides(rows, candidates) - rows.keys()))
        vectors = {seq: row[2] for seq, row in rows.items()}
        links = {seq: rows[seq][:2] for seq in candidates if seq in rows}
        return dense_parts(query, vectors, links, candidates), rows


def _sides(rows: Mapping[int, Link], seqs: Iterable[int]) -> set[int]:
    """The neighbours of those of `seqs` that `rows` holds."""
    return {side for seq in seqs if seq in rows for side in rows[seq][:2] if side is not None}


def _to_chroma(item: NewMemory, order: int) -> dict[str, Any]:
    # What filters need (scope, session, id) in keys of their own; the rest, text included,
    # in one JSON value, so Chroma indexes 4 values per record instead of 8 and a document
    # (its full-text index is unused here; search reads the catalogue's): that halves the
    # time an insert holds the GIL. Absent fields are left out.
    fields: dict[str, Any] = {"text": item.text, "created_at": item.created_at, "order": order}
    if item.speaker is not None:
        fields["speaker"] = item.speaker
    if item.role is not None:
        fields["role"] = item.role
    if item.metadata:
        fields["metadata"] = item.metadata
    return {
        "memweave_id": item.id,
        "scope": item.scope,
        "session_id": item.session_id,
        _FIELDS: json.dumps(fields, ensure_ascii=False),
    }


def _from_chroma(
    key: str, document: object, metadata: Mapping[str, Any]
) -> tuple[NewMemory, int] | None:
    """The memory a Chroma record holds and its write-order stamp, or None if it is not one
    of ours. Reads both layouts: fields in one JSON value (`_to_chroma`), and the earlier one,
    with the text as the document and each field a key of its own."""
    memory_id, scope = metadata.get("memweave_id"), metadata.get("scope")
    try:
        fields = json.loads(metadata[_FIELDS]) if _FIELDS in metadata else None
        sessions = json.loads(metadata.get("memweave_sessions") or "[]")
        if fields is None:
            fields = {
                "text": document,
                "created_at": metadata.get("created_at"),
                "order": metadata.get("memweave_order"),
                "speaker": metadata.get("speaker"),
                "role": metadata.get("role"),
                "metadata": json.loads(metadata.get("memweave_metadata") or "{}"),
            }
    except (TypeError, ValueError):
        return None
    if not isinstance(fields, dict):
        return None
    text, data = fields.get("text"), fields.get("metadata") or {}
    if not (isinstance(text, str) and isinstance(memory_id, str) and isinstance(scope, str)):
        return None
    if not isinstance(data, dict) or not isinstance(sessions, list):
        return None
    created_at, order = fields.get("created_at"), fields.get("order")
    record = NewMemory(
        key=key,
        id=memory_id,
        scope=scope,
        session_id=str(metadata.get("session_id") or ""),
        text=text,
        speaker=_optional_str(fields.get("speaker")),
        role=_optional_str(fields.get("role")),
        # Records written before times were kept in Chroma date from the epoch.
        created_at=float(created_at) if isinstance(created_at, int | float) else 0.0,
        metadata=data,
        sessions=tuple(str(session) for session in sessions if isinstance(session, str)),
    )
    return record, order if isinstance(order, int) and not isinstance(order, bool) else 0


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@contextlib.contextmanager
def _tolerated(path: str, what: str) -> Iterator[None]:
    """Log, rather than raise, a catalogue that is read-only or kept busy by another writer."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF not in _TOLERATED:
            raise
        _LOG.warning("the memory catalogue %r could not %s: %s", path, what, exc)
