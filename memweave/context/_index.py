"""The blocking core of vector memory: a Chroma collection (vectors) beside the SQLite catalogue.

`HybridIndex` owns both stores and runs on one worker thread of `VectorMemory`. Writes go to
Chroma first and are then committed to SQLite, the source of truth: a crash in between leaves at
most a vector nobody lists, which a retry overwrites. Reads take candidates from both indexes
and score them exactly (`memweave.context._fusion`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from memweave.context._fusion import (
    Vector,
    dense_scores,
    hybrid_score,
    named_speakers,
    unit,
)
from memweave.context._lexical import LexicalStore, NewMemory, Row, query_terms
from memweave.errors import ConfigurationError

__all__ = ["HybridIndex", "Mode", "open_collection"]

Mode = Literal["dense", "lexical", "hybrid"]

_META_EMBEDDER = "memweave:embedder"
_META_DIMENSIONS = "memweave:dimensions"
_META_SCHEMA = "memweave:schema"
_COLLECTION_SCHEMA = 1


def open_collection(client: Any, name: str, embedder: str, dimensions: int) -> Any:
    """Get or create the collection, recording the embedder; refuse one made with another."""
    import chromadb.errors

    wanted = {
        _META_EMBEDDER: embedder,
        _META_DIMENSIONS: dimensions,
        _META_SCHEMA: _COLLECTION_SCHEMA,
    }
    try:
        collection = client.get_collection(name, embedding_function=None)
    except chromadb.errors.NotFoundError:
        try:
            return client.create_collection(
                name,
                metadata=wanted,
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        except chromadb.errors.ChromaError:
            # Another process created it in between; check what it recorded.
            collection = client.get_collection(name, embedding_function=None)
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


def _where(scope: str, session_id: str | None) -> dict[str, Any]:
    # Values sit under an explicit `$eq`, so a user id shaped like an operator is only data.
    if session_id is None:
        return {"scope": {"$eq": scope}}
    return {"$and": [{"scope": {"$eq": scope}}, {"session_id": {"$eq": session_id}}]}


class HybridIndex:
    """A Chroma collection and a `LexicalStore` kept in step; every method blocks."""

    def __init__(
        self,
        collection: Any,
        lexical: LexicalStore,
        *,
        dimensions: int,
        close_client: Callable[[], None] | None = None,
    ) -> None:
        self.collection = collection
        self.lexical = lexical
        self.dimensions = dimensions
        self._close_client = close_client

    def close(self) -> None:
        """Close the SQLite connection, and the Chroma client if this index made it."""
        try:
            self.lexical.close()
        finally:
            if self._close_client is not None:
                self._close_client()

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
        self.collection.upsert(
            ids=[item.key for item in items],
            embeddings=embeddings,
            documents=[item.text for item in items],
            metadatas=[_chroma_metadata(item) for item in items],
        )
        return self.lexical.insert(items, [vector.tobytes() for vector in embeddings])

    def delete(self, scope: str, session_id: str | None, memory_id: str | None) -> int:
        """Delete one memory or a scope's memories from both stores; returns how many."""
        keys = self.lexical.delete(scope, session_id, memory_id)
        for start in range(0, len(keys), 1000):
            self.collection.delete(ids=keys[start : start + 1000])
        return len(keys)

    # -- reads --------------------------------------------------------------------------------

    def count(self, scope: str, session_id: str | None) -> int:
        """Number of memories in the scope."""
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
    ) -> list[tuple[Row, float]]:
        """The best `k` memories of the scope for `query`, with their scores, best first."""
        pool = max(4 * k, 40)
        exact = self.lexical.exact(scope, session_id, query)
        lexical: dict[int, float] = {}
        if mode != "dense":
            lexical = self.lexical.search(scope, session_id, query_terms(query), pool)
        dense: dict[int, float] = {}
        if mode != "lexical":
            if query_vector is None:
                raise ConfigurationError(f"{mode} search needs a query vector")
            dense = self._dense(scope, session_id, unit(query_vector), pool, set(lexical))
        scores: dict[int, float]
        if mode == "dense":
            scores = dense
        elif mode == "lexical":
            scores = lexical
        else:
            rows = self.lexical.rows(set(dense) | set(lexical))
            named = named_speakers(query, self.lexical.speakers(scope, session_id))
            scores = {
                seq: hybrid_score(
                    dense.get(seq, 0.0), lexical.get(seq, 0.0), rows[seq].speaker in named
                )
                for seq in rows
            }
        for seq in exact:
            scores[seq] = 1.0
        first = set(exact)
        ranked = sorted(scores, key=lambda seq: (seq not in first, -scores[seq], seq))[:k]
        found = self.lexical.rows(ranked)
        return [(found[seq], scores[seq]) for seq in ranked if seq in found]

    def _dense(
        self,
        scope: str,
        session_id: str | None,
        query: Vector,
        pool: int,
        extra: set[int],
    ) -> dict[int, float]:
        """Dense scores of the nearest `pool` memories, their neighbours, and `extra`."""
        result = self.collection.query(
            query_embeddings=[query],
            n_results=pool,
            where=_where(scope, session_id),
            include=[],
        )
        # A vector whose catalogue row is gone (a crash between the two writes) is ignored.
        nearest = {row.seq: row for row in self.lexical.rows_by_key(result["ids"][0]).values()}
        rows = dict(nearest)
        rows.update(self.lexical.rows(extra - set(rows)))
        candidates = set(rows)
        for row in nearest.values():
            candidates.update(side for side in (row.prev, row.next) if side is not None)
        rows.update(self.lexical.rows(candidates - set(rows)))
        needed = {
            side
            for seq in candidates
            if seq in rows
            for side in (rows[seq].prev, rows[seq].next)
            if side is not None
        }
        rows.update(self.lexical.rows(needed - set(rows)))
        vectors = {seq: np.frombuffer(row.vector, dtype="<f4") for seq, row in rows.items()}
        links = {seq: (rows[seq].prev, rows[seq].next) for seq in candidates if seq in rows}
        return dense_scores(query, vectors, links, candidates)


def _chroma_metadata(item: NewMemory) -> dict[str, Any]:
    # Only what filters need, plus the id for people inspecting the collection: the catalogue
    # holds the rest, and every extra field makes each write slower.
    return {"memweave_id": item.id, "scope": item.scope, "session_id": item.session_id}
