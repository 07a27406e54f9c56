"""Parts of `VectorMemory`: its hits, how it opens its stores, its option checks, and reads that
span both kinds of memory (turns and facts)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from memweave.context._facts_models import MemoryKind
from memweave.context._facts_store import fact_scope
from memweave.context._fusion import DEFAULT_FUSION, FusionWeights
from memweave.context.embeddings import ChromaDefaultEmbeddings, EmbeddingFunction
from memweave.context.facts import FactExtractor
from memweave.errors import BackendUnavailable, ConfigurationError, InvalidArgument
from memweave.providers._namespace import CHROMA, check_namespace

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex
    from memweave.context._lexical import Row

__all__ = [
    "KINDS",
    "MODES",
    "ClientFactory",
    "MemoryHit",
    "RetrievalMode",
    "check_fusion",
    "check_kind",
    "check_options",
    "check_search",
    "check_setup",
    "client_factory",
    "count_kinds",
    "embedded_client",
    "hit_of",
    "map_errors",
    "memory_names",
    "open_index",
    "private_client",
    "quantized_embedder",
    "search_kinds",
]

_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_MEMORY = "_memory"

RetrievalMode: TypeAlias = Literal["dense", "lexical", "hybrid"]
"""`dense` (embeddings), `lexical` (BM25) or `hybrid` (both, fused; the default)."""

MODES = ("dense", "lexical", "hybrid")
KINDS: tuple[MemoryKind, ...] = ("turn", "fact")

ClientFactory: TypeAlias = Callable[[], tuple[Any, Callable[[], None] | None]]
"""Makes the Chroma client, and says how to close it (None: the caller's, left open)."""


def embedded_client(folder: Path) -> tuple[Any, Callable[[], None] | None]:
    """An embedded Chroma in `folder`, owned by this process while open."""
    from memweave.providers._chroma_client import EmbeddedChroma

    embedded = EmbeddedChroma(folder)
    return embedded.client, embedded.close


def private_client(folder: Path) -> tuple[Any, Callable[[], None] | None]:
    """A Chroma in a private temporary folder: no other process can know of it to share it."""
    import chromadb

    client: Any = chromadb.PersistentClient(str(folder))
    return client, client.close


def client_factory(
    path: str | os.PathLike[str] | None,
    client: Any,
    collection: str,
    lexical_path: str | os.PathLike[str] | None,
    *,
    private: bool,
) -> tuple[ClientFactory, str]:
    """How `VectorMemory` gets its Chroma client, and its catalogue file.

    Raises:
        ConfigurationError: Both `path` and `client`, or `client` without `lexical_path`.
    """
    if path is not None and client is not None:
        raise ConfigurationError("pass either path= or client=, not both")
    if client is not None:
        if lexical_path is None:
            raise ConfigurationError(
                "with client=, pass lexical_path= (a SQLite file for the catalogue and "
                "BM25 index, or ':memory:')"
            )
        return (lambda: (client, None)), str(lexical_path)
    folder = Path(path or ".")
    if lexical_path is None:
        lexical_path = folder / f"memweave-{collection}.sqlite3"
    make = private_client if private else embedded_client
    return (lambda: make(folder)), str(lexical_path)


class MemoryHit(BaseModel):
    """One memory found by a search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The memory's id (the message id, for turns stored by `invoked`)."""
    text: str
    """The remembered text."""
    score: float = Field(ge=0.0, le=1.0)
    """Similarity to the query in [0, 1], higher is better; 1 for an exact match."""
    created_at: datetime
    """When the remembered text was written (UTC); for a fact, when it was last said."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """The metadata given to `add`."""
    speaker: str | None = None
    """Who said it, when known (a message's `name`, else its role)."""
    role: str | None = None
    """The role of the message it came from, for memories stored by `invoked`."""
    session_id: str | None = None
    """The session it was written in, when known (None for a fact)."""
    kind: MemoryKind = "turn"
    """`turn` (text stored word for word) or `fact` (extracted by a `FactExtractor`)."""


def hit_of(row: Row, score: float, kind: MemoryKind) -> MemoryHit:
    """The hit for a catalogue row."""
    return MemoryHit(
        id=row.id,
        text=row.text,
        score=max(0.0, min(1.0, score)),
        created_at=datetime.fromtimestamp(row.created_at, UTC),
        metadata=json.loads(row.metadata),
        speaker=row.speaker,
        role=row.role,
        session_id=row.session_id or None,
        kind=kind,
    )


def check_kind(kind: object, name: str = "kind") -> tuple[MemoryKind, ...]:
    """The kinds a call with `kind` covers: `turn`, `fact`, or both for None."""
    if kind is None:
        return KINDS
    if kind == "turn":
        return ("turn",)
    if kind == "fact":
        return ("fact",)
    raise InvalidArgument(name, kind, "must be 'turn', 'fact' or None (both)")


def memory_names(namespace: object, collection: object) -> tuple[str, str]:
    """The namespace and Chroma collection of a `VectorMemory` given `namespace` (the
    collection is `<namespace>_memory`; `memweave_memory` by default), or the deprecated
    `collection`: an exact name, kept as it is, whose namespace is the name less its
    `_memory` ending.

    Raises:
        ConfigurationError: The value given is not valid.
    """
    if collection is None:
        checked = check_namespace(namespace, CHROMA, owner="VectorMemory")
        return checked, f"{checked}{_MEMORY}"
    if not isinstance(collection, str) or not _COLLECTION_NAME.match(collection):
        raise ConfigurationError(
            f"VectorMemory: collection must be 3-512 characters of [a-zA-Z0-9._-], starting "
            f"and ending with a letter or digit; got {collection!r}"
        )
    return collection.removesuffix(_MEMORY) or collection, collection


def check_setup(embedder: object, extractor: object, inject_kind: object) -> EmbeddingFunction:
    """Raise `ConfigurationError` for a bad embedder, extractor or `inject_kind` of
    `VectorMemory`; returns the embedder (the default one for None)."""
    if extractor is not None and not isinstance(extractor, FactExtractor):
        raise ConfigurationError(f"extractor must be a FactExtractor, got {extractor!r}")
    if inject_kind not in (None, *KINDS):
        raise ConfigurationError(
            f"inject_kind must be 'turn', 'fact' or None (both), got {inject_kind!r}"
        )
    if embedder is None:
        return ChromaDefaultEmbeddings()
    if not isinstance(embedder, EmbeddingFunction):
        raise ConfigurationError(
            f"embedder must have embed(), name and dimensions; got {embedder!r}"
        )
    return embedder


def quantized_embedder(
    embedder: EmbeddingFunction | None, quantized: object
) -> EmbeddingFunction | None:
    """The embedder `VectorMemory(quantized=True)` asks for: the default model's int8 copy.

    Raises:
        ConfigurationError: `quantized` is not a bool, or is True beside an `embedder`.
    """
    if not isinstance(quantized, bool):
        raise ConfigurationError(f"quantized must be a bool, got {quantized!r}")
    if not quantized:
        return embedder
    if embedder is not None:
        raise ConfigurationError(
            "quantized=True picks the default model's int8 copy; with embedder=, pass "
            "ChromaDefaultEmbeddings(quantized=True) as the embedder instead"
        )
    return ChromaDefaultEmbeddings(quantized=True)


def check_fusion(fusion: object) -> FusionWeights:
    """The fusion weights of `VectorMemory` (the defaults for None); `ConfigurationError`
    for anything but a `FusionWeights`."""
    if fusion is None:
        return DEFAULT_FUSION
    if not isinstance(fusion, FusionWeights):
        raise ConfigurationError(f"fusion must be a FusionWeights, got {fusion!r}")
    return fusion


def check_options(
    mode: object, k: object, min_score: object, max_tokens: object, window: object
) -> None:
    """Raise `ConfigurationError` for a bad option of `VectorMemory`."""
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ConfigurationError(f"k must be an int from 1 to 1000, got {k!r}")
    if (
        isinstance(min_score, bool)
        or not isinstance(min_score, int | float)
        or not 0 <= min_score <= 1
    ):
        raise ConfigurationError(f"min_score must be a number in [0, 1], got {min_score!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigurationError(f"max_memory_tokens must be a positive int, got {max_tokens!r}")
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 10:
        raise ConfigurationError(f"context_window must be an int from 0 to 10, got {window!r}")


def check_search(query: object, mode: object, k: object, min_score: object) -> RetrievalMode:
    """Raise `InvalidArgument` for a bad argument of `search`; returns the mode."""
    if not isinstance(query, str):
        raise InvalidArgument("query", query, "must be a str")
    if mode not in MODES:
        raise InvalidArgument("mode", mode, f"must be one of {MODES}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidArgument("k", k, "must be an int from 1 to 1000")
    if isinstance(min_score, bool) or not isinstance(min_score, int | float):
        raise InvalidArgument("min_score", min_score, "must be a number")
    return mode  # type: ignore[return-value]


@contextlib.contextmanager
def map_errors(lexical_path: str) -> Iterator[None]:
    """Translate Chroma's and SQLite's errors into `BackendUnavailable`."""
    import chromadb.errors

    try:
        yield
    except chromadb.errors.ChromaError as exc:
        raise BackendUnavailable(f"Chroma failed: {exc}") from exc
    except sqlite3.Error as exc:
        raise BackendUnavailable(f"the memory catalogue {lexical_path!r} failed: {exc}") from exc


def open_index(
    make_client: ClientFactory,
    collection_name: str,
    embedder: EmbeddingFunction,
    lexical_path: str,
    context_window: int,
    fusion: FusionWeights = DEFAULT_FUSION,
) -> tuple[HybridIndex, Any]:
    """Open the collection and its catalogue; returns the index and the client. Each scope is
    caught up with Chroma on its first use (`HybridIndex.catch_up`)."""
    from memweave.context._index import HybridIndex, open_collection
    from memweave.context._lexical import LexicalStore

    name, dimensions = embedder.name, embedder.dimensions
    client, close_client = make_client()
    lexical = None
    try:
        collection = open_collection(client, collection_name, name, dimensions)
        lexical = LexicalStore(
            lexical_path,
            context_window=context_window,
            context_weight=fusion.context,
            date_weight=fusion.date,
        )
        lexical.check_owner(collection_name, name, dimensions)
        index = HybridIndex(
            collection, lexical, dimensions=dimensions, close_client=close_client, fusion=fusion
        )
        # Chroma loads a collection's segments on its first use; a filtered search racing
        # another call through that first load can miss records (chromadb 1.5), and a
        # search runs Chroma's query beside the catalogue's reads. So the first use is here.
        collection.count()
    except BaseException:
        if lexical is not None:
            lexical.close()
        if close_client is not None:
            close_client()
        raise
    return index, client


def search_kinds(
    index: HybridIndex,
    scope: str,
    session_id: str | None,
    kinds: tuple[MemoryKind, ...],
    query: str,
    vector: list[float] | None,
    *,
    k: int,
    mode: RetrievalMode,
) -> list[tuple[Row, float, MemoryKind]]:
    """The best `k` memories of these kinds in the scope, best first (scores are similarities
    on one scale, so turns and facts merge by score)."""
    found: list[tuple[Row, float, MemoryKind]] = []
    for kind in kinds:
        target = scope if kind == "turn" else fact_scope(scope)
        # Most memories hold no facts: an empty kind costs one count, not a search. (The
        # catalogue has caught up by then: the turn search before it catches up.)
        if len(kinds) > 1 and kind == "fact" and index.lexical.count(target, session_id) == 0:
            continue
        hits = index.search(target, session_id, query, vector, k=k, mode=mode)
        found.extend((row, score, kind) for row, score in hits)
    # Stable: an exact match (score 1) stays ahead of equal scores from the kind after it.
    found.sort(key=lambda hit: -hit[1])
    return found[:k]


def count_kinds(
    index: HybridIndex, scope: str, session_id: str | None, kinds: tuple[MemoryKind, ...]
) -> int:
    """How many memories of these kinds the scope holds."""
    return sum(
        index.count(scope if kind == "turn" else fact_scope(scope), session_id) for kind in kinds
    )
