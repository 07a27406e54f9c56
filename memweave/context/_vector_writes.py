"""How `VectorMemory` writes a batch of `add`s: which items are new, repeats, new names of a
text the scope holds, or ids already naming another text; and the new ones' embedding, each
chunk overlapping the write of the one before."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from memweave.context.embeddings import EmbeddingFunction
from memweave.errors import ConfigurationError

if TYPE_CHECKING:
    from memweave.context._index import HybridIndex
    from memweave.context._lexical import NewMemory

__all__ = [
    "WRITE_CHUNK",
    "WRITE_TAIL",
    "Add",
    "AddResult",
    "IdTaken",
    "chunk_sizes",
    "write_batch",
]

_T = TypeVar("_T")
_V = TypeVar("_V")

WRITE_CHUNK = 256
"""Most memories embedded, then written, at a time by `write_batch`: while one chunk is
written, the next one is embedded. Large, so the model batches inputs of similar length well."""
WRITE_TAIL = 32
"""The last chunk of a batch: small, so the one write nothing overlaps is short, and its
embedding still covers the write of the chunk before it."""


@dataclass(frozen=True, slots=True)
class Add:
    """One `VectorMemory.add` call: the record to store, and whether the caller chose its id."""

    item: NewMemory
    named: bool


@dataclass(frozen=True, slots=True)
class IdTaken:
    """What an `add` gets whose id already names another text in its scope (nothing stored)."""

    id: str
    stored_text: str


AddResult: TypeAlias = str | IdTaken
"""Per `add`: the id of the memory holding its text, or why its id could not be used."""


@dataclass(frozen=True, slots=True)
class _Stored:
    """The catalogued memory holding an item's id or text."""

    id: str
    text: str
    own: bool
    """Found under the item's own id (as the memory's id, or as another name of it)."""
    vector: bytes


class _Runner(Protocol):
    def __call__(self, function: Callable[..., _T], *args: Any) -> Awaitable[_T]: ...


WAIT_FOR_MODEL = 0.05
"""Longest a write waits for the next chunk's model runs to get under way (`_Paced`)."""


@runtime_checkable
class _Paced(Protocol):
    """An embedder that can say when its model runs are under way
    (`ChromaDefaultEmbeddings`). Embedded Chroma holds the GIL for a whole insert, so a
    write started while the next chunk is still being tokenised stalls the embedding too;
    started once the model runs (which release the GIL), it overlaps them."""

    def runs_started(self) -> int: ...

    def wait_until_running(self, since: int | None, timeout: float) -> None: ...


@runtime_checkable
class _Streaming(Protocol):
    """An embedder that embeds several parts as one stream of model runs, yielding each
    part's vectors in order (`ChromaDefaultEmbeddings.embed_parts`)."""

    def embed_parts(
        self, parts: Sequence[Sequence[str]]
    ) -> AsyncGenerator[list[list[float]], None]: ...


def _write_beside(
    index: HybridIndex,
    part: Sequence[NewMemory],
    vectors: Sequence[Sequence[float]],
    paced: _Paced | None,
    mark: int | None,
) -> list[str]:
    """On the worker: write a chunk while the next one embeds, once its runs are under way."""
    if paced is not None:
        paced.wait_until_running(mark, WAIT_FOR_MODEL)
    return index.write(part, vectors)


def chunk_sizes(count: int) -> list[int]:
    """How `write_batch` cuts `count` new memories: even chunks of at most `WRITE_CHUNK`,
    then a tail of `WRITE_TAIL` (one chunk when `count` is no more than twice that)."""
    if count <= 2 * WRITE_TAIL:
        return [count] if count else []
    body = count - WRITE_TAIL
    parts = math.ceil(body / WRITE_CHUNK)
    sizes = [body // parts + (1 if n < body % parts else 0) for n in range(parts)]
    return [*sizes, WRITE_TAIL]


def _find_stored(index: HybridIndex, items: Sequence[NewMemory]) -> list[_Stored | None]:
    """On the worker: per item, the memory its id names (a memory's id or another name of it),
    else the memory holding its exact text in its scope, else None (the items' scopes caught
    up with Chroma first)."""
    index.catch_up(*dict.fromkeys(item.scope for item in items))
    lexical = index.lexical
    by_key, _ = lexical.seqs_by_key(item.key for item in items)
    same_text: dict[int, list[int]] = {}
    for n, item in enumerate(items):
        if item.key not in by_key:
            same_text[n] = lexical.exact(item.scope, None, item.text)
    rows = lexical.rows({*by_key.values(), *(s for seqs in same_text.values() for s in seqs)})
    out: list[_Stored | None] = []
    for n, item in enumerate(items):
        if item.key in by_key:
            row = rows.get(by_key[item.key])
            out.append(None if row is None else _Stored(row.id, row.text, True, row.vector))
            continue
        # `exact` ignores case and whitespace; a scope holds one memory per exact text.
        match = [rows[s] for s in same_text[n] if s in rows and rows[s].text == item.text]
        row = match[0] if match else None
        out.append(None if row is None else _Stored(row.id, row.text, False, row.vector))
    return out


def _write_names(index: HybridIndex, items: Sequence[NewMemory]) -> list[AddResult | None]:
    """On the worker: store each item's id as another name of the memory holding its text (a
    Chroma record of its own, catalogued as an alias of that memory, which it also makes
    visible from the item's session). Per item: its id, `IdTaken`, or None when its text is
    not stored (any more), so it is to be written as a new memory."""
    out: list[AddResult | None] = []
    names: list[NewMemory] = []
    vectors: list[bytes] = []
    for item, stored in zip(items, _find_stored(index, items), strict=True):
        if stored is None:
            out.append(None)
        elif stored.own:
            out.append(item.id if stored.text == item.text else IdTaken(item.id, stored.text))
        else:
            names.append(item)
            vectors.append(stored.vector)
            out.append(item.id)
    if names:
        floats = [list(struct.unpack(f"<{len(blob) // 4}f", blob)) for blob in vectors]
        # Chroma first, then the catalogue (which skips the text it holds): the record is
        # then adopted as an alias, as any catalogue sharing the collection would.
        index.write(names, floats)
        index.lexical.adopt(names, vectors)
    return out


def _checked(embedder: object, part: list[NewMemory], vectors: list[_V]) -> list[_V]:
    if len(vectors) != len(part):
        raise ConfigurationError(
            f"embedder {getattr(embedder, 'name', embedder)!r} returned {len(vectors)} "
            f"vectors for {len(part)} texts"
        )
    return vectors


async def _embed_and_write(
    fresh: list[NewMemory], *, index: HybridIndex, embedder: EmbeddingFunction, run: _Runner
) -> list[str]:
    """Embed and write `fresh` chunk by chunk, in order, embedding the next chunk while the
    store writes the last one (the model and the store run on different threads)."""
    parts: list[list[NewMemory]] = []
    for size in chunk_sizes(len(fresh)):
        start = sum(len(part) for part in parts)
        parts.append(fresh[start : start + size])
    paced = embedder if isinstance(embedder, _Paced) else None
    if isinstance(embedder, _Streaming):
        return await _stream_and_write(parts, embedder, index=index, paced=paced, run=run)

    async def embed(part: list[NewMemory]) -> list[list[float]]:
        return _checked(embedder, part, await embedder.embed([item.text for item in part]))

    written: list[str] = []
    pending = asyncio.ensure_future(embed(parts[0]))
    try:
        for number, part in enumerate(parts):
            vectors = await pending
            if number + 1 < len(parts):
                mark = paced.runs_started() if paced is not None else 0
                pending = asyncio.ensure_future(embed(parts[number + 1]))
                written += await run(_write_beside, index, part, vectors, paced, mark)
            else:
                written += await run(index.write, part, vectors)
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
    return written


async def _stream_and_write(
    parts: list[list[NewMemory]],
    embedder: _Streaming,
    *,
    index: HybridIndex,
    paced: _Paced | None,
    run: _Runner,
) -> list[str]:
    """`_embed_and_write` with a streaming embedder: every chunk is queued for the model at
    once, and each is written as soon as it is embedded while the model goes on with the
    next ones; a failed write stops the model runs not begun."""
    written: list[str] = []
    stream = embedder.embed_parts([[item.text for item in part] for part in parts])
    async with contextlib.aclosing(stream):
        number = 0
        async for vectors in stream:
            if number == len(parts):
                raise ConfigurationError(f"embedder {embedder!r} yielded more than {number} parts")
            part = parts[number]
            number += 1
            _checked(embedder, part, vectors)
            beside = paced if number < len(parts) else None
            written += await run(_write_beside, index, part, vectors, beside, None)
    if number != len(parts):
        raise ConfigurationError(f"embedder {embedder!r} yielded {number} of {len(parts)} parts")
    return written


async def write_batch(
    adds: Sequence[Add], *, index: HybridIndex, embedder: EmbeddingFunction, run: _Runner
) -> list[AddResult]:
    """Write a batch of `add`s (see `VectorMemory.add`); returns each one's result.

    - An id its scope holds, with the same text: nothing new is stored (a safe retry).
    - An id its scope holds with another text: `IdTaken`, nothing stored.
    - A text its scope holds under another id: with a caller's id, that id becomes another
      name of the memory; with a generated one, the result is the stored memory's id.
    - Anything else is a new memory. New memories are embedded and written in chunks
      (`chunk_sizes`), the next chunk's embedding overlapping the last chunk's write; if a
      chunk fails, the chunks before it stay written (a retry completes the batch).

    A repeat from another session makes the stored memory visible from that session too.
    Within the batch, items are taken in order: a later item repeating an earlier one's id or
    text is handled as if the earlier one were stored already.
    """
    items = [add.item for add in adds]
    known = await run(_find_stored, index, items)
    results: list[AddResult | None] = [None] * len(items)
    claimed: dict[str, NewMemory] = {}  # new memories and new names of this batch, by key
    texts: dict[tuple[str, str], int] = {}  # new memories of this batch, by text
    fresh: list[int] = []
    names: list[int] = []
    twins: list[tuple[int, int]] = []  # (item, the new memory of this batch holding its text)
    repeats: list[NewMemory] = []
    for n, (add, stored) in enumerate(zip(adds, known, strict=True)):
        item = add.item
        twin = claimed.get(item.key)
        held = stored.text if stored is not None and stored.own else None
        if held is None and twin is not None:
            held = twin.text
        if held is not None:
            results[n] = item.id if held == item.text else IdTaken(item.id, held)
            if held == item.text:
                repeats.append(item)
        elif stored is not None or (item.scope, item.text_key) in texts:
            if add.named:
                names.append(n)
                claimed[item.key] = item
            elif stored is not None:
                results[n] = stored.id
                repeats.append(item)
            else:
                twins.append((n, texts[(item.scope, item.text_key)]))
                repeats.append(item)
        else:
            fresh.append(n)
            claimed[item.key] = item
            texts[(item.scope, item.text_key)] = n
    if fresh:
        await _write_fresh(fresh, adds, results, names, index=index, embedder=embedder, run=run)
    if names:
        named = await run(_write_names, index, [items[n] for n in names])
        late = [n for n, result in zip(names, named, strict=True) if result is None]
        for n, result in zip(names, named, strict=True):
            results[n] = result
        if late:  # the text was deleted meanwhile: store it anew
            await _write_fresh(late, adds, results, None, index=index, embedder=embedder, run=run)
    for n, first in twins:
        results[n] = results[first]
    attach = [item for item in repeats if item.session_id]
    if attach:
        # Stored once, under its first session; visible from the new one too.
        await run(index.attach, attach)
    done = [result for result in results if result is not None]
    assert len(done) == len(results), "every add of the batch has a result"
    return done


async def _write_fresh(
    fresh: list[int],
    adds: Sequence[Add],
    results: list[AddResult | None],
    names: list[int] | None,
    *,
    index: HybridIndex,
    embedder: EmbeddingFunction,
    run: _Runner,
) -> None:
    """Write the new memories `fresh` (positions in `adds`) and set their results; one whose
    text another writer stored first goes to `names` (when given) if the caller chose its id."""
    written = await _embed_and_write(
        [adds[n].item for n in fresh], index=index, embedder=embedder, run=run
    )
    for n, holder in zip(fresh, written, strict=True):
        if names is not None and holder != adds[n].item.id and adds[n].named:
            names.append(n)
        else:
            results[n] = holder
