"""The collection of a Chroma history: opening it (checking the embedder and layout it
records) and the unit vectors written to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memweave.embeddings import EmbeddingFunction
from memweave.errors import ConfigurationError
from memweave.providers._chroma_client import get_or_create_collection
from memweave.providers._chroma_history_ops import text_of
from memweave.providers._records import StoredRecord

__all__ = ["blank_vector", "embed_records", "mark_layout", "open_collection", "unit_vectors"]

_META_EMBEDDER = "memweave:embedder"
_META_DIMENSIONS = "memweave:dimensions"
_META_KIND = "memweave:kind"
_META_LAYOUT = "memweave:layout"
_KIND = "history"
_LAYOUT = 2
"""Collections of this layout hold no session record without the listing fields."""


def open_collection(client: Any, name: str, embedder: str, dimensions: int) -> tuple[Any, bool]:
    """Get or create the history collection `name`; return it and whether an older memweave
    made it (so session records without the listing fields may exist).

    Raises:
        ConfigurationError: The collection was not made by a Chroma history, or holds
            another embedder's vectors.
    """
    wanted = {
        _META_KIND: _KIND,
        _META_EMBEDDER: embedder,
        _META_DIMENSIONS: dimensions,
        _META_LAYOUT: _LAYOUT,
    }
    collection, created = get_or_create_collection(client, name, wanted)
    if created:
        return collection, False
    found = collection.metadata or {}
    if found.get(_META_KIND) != _KIND:
        raise ConfigurationError(
            f"Chroma collection {name!r} was not created by ChromaChatHistoryProvider; use "
            "another collection name"
        )
    if (found.get(_META_EMBEDDER), found.get(_META_DIMENSIONS)) != (embedder, dimensions):
        raise ConfigurationError(
            f"Chroma collection {name!r} holds vectors of embedder "
            f"{found.get(_META_EMBEDDER)!r} ({found.get(_META_DIMENSIONS)} dimensions), not "
            f"{embedder!r} ({dimensions} dimensions); use that embedder or another collection"
        )
    return collection, found.get(_META_LAYOUT) != _LAYOUT


def mark_layout(collection: Any) -> None:
    """Record that no session record lacks the listing fields any more."""
    collection.modify(metadata={**(collection.metadata or {}), _META_LAYOUT: _LAYOUT})


def blank_vector(dimensions: int) -> list[float]:
    """The vector of a record with no text: a fixed unit vector."""
    return [1.0] + [0.0] * (dimensions - 1)


def unit_vectors(vectors: Sequence[Sequence[float]], dimensions: int) -> list[list[float]]:
    """`vectors` scaled to length 1 (cosine distance in [0, 2]); a zero vector becomes
    `blank_vector`."""
    out: list[list[float]] = []
    for vector in vectors:
        norm = sum(v * v for v in vector) ** 0.5
        out.append([v / norm for v in vector] if norm > 0 else blank_vector(dimensions))
    return out


async def embed_records(
    embedder: EmbeddingFunction, records: Sequence[StoredRecord]
) -> list[list[float]]:
    """One unit vector per record: its text's, or `blank_vector` for a record without text
    (which is never sent to the embedder)."""
    texts = [text_of(record.data) for record in records]
    todo = [i for i, text in enumerate(texts) if text.strip()]
    vectors = [blank_vector(embedder.dimensions) for _ in records]
    if todo:
        made = await embedder.embed([texts[i] for i in todo])
        for i, vector in zip(todo, unit_vectors(made, embedder.dimensions), strict=True):
            vectors[i] = vector
    return vectors
