"""Search for `MemweaveStore`: filters, the texts an item is indexed by, and ranking.

Ranking reuses memweave's retrieval (`memweave.context`): the BM25 index of `VectorMemory`'s
catalogue (`LexicalStore`, FTS5 with Porter stemming, scores relative to the query's own
score), built in memory over the candidates of one search, so a score never depends on what
other namespaces hold; and, with an embedder, the hybrid fusion of `memweave.context._fusion`
(a weighted mean of the dense and lexical similarities). Every score is in [0, 1], higher is
better, and an item with a text equal to the query (ignoring case and whitespace) scores 1.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langgraph.store.base import get_text_at_path, tokenize_path

from memweave.context._lexical import LexicalStore, NewMemory, exact_key, query_terms
from memweave.errors import InvalidArgument

if TYPE_CHECKING:
    from memweave.context._fusion import Vector

__all__ = ["check_filter", "index_texts", "lexical_scores", "matches", "rank"]

_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


def check_filter(filter: object) -> dict[str, Any] | None:
    """Return the filter, or raise `InvalidArgument` for a malformed one (unknown operator)."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidArgument("filter", filter, "must be a dict of field names to values")
    stack: list[Any] = [filter]
    while stack:
        current = stack.pop()
        if isinstance(current, Mapping):
            for name, value in current.items():
                if not isinstance(name, str):
                    raise InvalidArgument("filter", filter, f"key {name!r} is not a str")
                if name.startswith("$") and name not in _OPERATORS:
                    raise InvalidArgument(
                        "filter", filter, f"unknown operator {name!r}; use {sorted(_OPERATORS)}"
                    )
                stack.append(value)
        elif isinstance(current, list | tuple):
            stack.extend(current)
    return dict(filter)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _compare(value: object, operator: str, wanted: object) -> bool:
    if operator == "$eq":
        return _equal(value, wanted)
    if operator == "$ne":
        return not _equal(value, wanted)
    left, right = _number(value), _number(wanted)
    if left is not None and right is not None:
        pair: tuple[Any, Any] = (left, right)
    elif isinstance(value, str) and isinstance(wanted, str):
        pair = (value, wanted)
    else:
        return False  # no order between these types (a missing field, mixed types)
    if operator == "$gt":
        return bool(pair[0] > pair[1])
    if operator == "$gte":
        return bool(pair[0] >= pair[1])
    if operator == "$lt":
        return bool(pair[0] < pair[1])
    return bool(pair[0] <= pair[1])


def _equal(value: object, wanted: object) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


def _match(value: object, condition: object) -> bool:
    if isinstance(condition, Mapping):
        if any(name.startswith("$") for name in condition):
            return all(_compare(value, op, wanted) for op, wanted in condition.items())
        if not isinstance(value, Mapping):
            return False
        return all(_match(value.get(name), part) for name, part in condition.items())
    if isinstance(condition, list | tuple):
        return (
            isinstance(value, list)
            and len(value) == len(condition)
            and all(_match(v, c) for v, c in zip(value, condition, strict=True))
        )
    return _equal(value, condition)


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """Whether an item's value passes `filter`: each field equals the given value (nested
    dicts match field by field, lists element by element), or meets every operator given
    (`$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`; order comparisons between two numbers or two
    strings only). A missing field matches nothing but `$ne`."""
    if not filter:
        return True
    return all(_match(value.get(name), condition) for name, condition in filter.items())


def index_texts(value: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """The texts an item is indexed by: each field path's text(s) in LangGraph's syntax
    (`"$"` is the whole value as JSON, `"a.b"`, `"list[*].text"`, ...); missing fields are
    skipped."""
    texts: list[str] = []
    for field in fields:
        path = field if field == "$" else tokenize_path(field)
        texts.extend(text for text in get_text_at_path(value, path) if text)
    return texts


def lexical_scores(documents: Mapping[str, Sequence[str]], query: str) -> dict[str, float]:
    """BM25 similarity in [0, 1] of each document (id -> its texts) to `query`; 1 for a
    document holding a text equal to the query (ignoring case and whitespace). Blocking."""
    wanted = exact_key(query)
    out = {
        doc: 1.0 for doc, texts in documents.items() if any(exact_key(t) == wanted for t in texts)
    }
    terms = query_terms(query)
    joined: dict[str, list[str]] = {}
    for doc, texts in documents.items():
        if doc not in out and texts:
            joined.setdefault("\n".join(texts), []).append(doc)
    if not terms or not joined:
        return out
    index = LexicalStore(":memory:", context_window=0, context_weight=0.0, date_weight=0.0)
    try:
        # One row per distinct text: items holding the same text get the same score.
        rows = list(joined)
        index.insert(
            [
                NewMemory(
                    key=str(number),
                    id=str(number),
                    scope="s",
                    session_id="",
                    text=text,
                    speaker=None,
                    role=None,
                    created_at=0.0,
                    metadata={},
                )
                for number, text in enumerate(rows)
            ],
            [b""] * len(rows),
        )
        hits = index.search("s", None, terms, len(rows))
        for seq, row in index.rows(hits).items():
            for doc in joined[rows[int(row.id)]]:
                out[doc] = hits[seq]
    finally:
        index.close()
    return out


async def rank(
    documents: Mapping[str, Sequence[str]],
    query: str,
    *,
    query_vector: Vector | None = None,
    vectors: Mapping[str, Sequence[Vector]] | None = None,
) -> dict[str, float]:
    """The score in [0, 1] of each indexed document for `query`.

    Lexical only without `query_vector`; else each document's dense similarity (the best of
    its vectors) is fused with its lexical one (`memweave.context._fusion.hybrid_score`).
    """
    lexical = await asyncio.to_thread(lexical_scores, documents, query)
    if query_vector is None or vectors is None:
        return {doc: lexical.get(doc, 0.0) for doc in documents}
    # numpy comes with the chroma extra, needed only with an embedder.
    from memweave.context._fusion import dense_scores, hybrid_score

    out: dict[str, float] = {}
    for doc in documents:
        if lexical.get(doc) == 1.0 and any(
            exact_key(t) == exact_key(query) for t in documents[doc]
        ):
            out[doc] = 1.0
            continue
        best = 0.0
        for number, vector in enumerate(vectors.get(doc, ())):
            score = dense_scores(query_vector, {number: vector}, {}, [number])[number]
            best = max(best, score)
        fused = hybrid_score(best, lexical.get(doc, 0.0), False)
        out[doc] = min(1.0, max(0.0, fused)) if math.isfinite(fused) else 0.0
    return out
