"""Batched ingest: concurrent adds are embedded and written in chunks, in order, embedding the
next chunk while the last one is written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave.context import VectorMemory
from memweave.context._vector_writes import WRITE_CHUNK, WRITE_TAIL, chunk_sizes
from memweave.errors import ModelError
from tests.context.conftest import HashEmbeddings


class SlowEmbeddings(HashEmbeddings):
    """Records how many embed calls run at once with a store write."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.fail_on_call = fail_on_call

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            self.calls.append(list(texts))
            raise ModelError("the model is down")
        await asyncio.sleep(0.01)
        return await super().embed(texts)


@given(st.integers(min_value=0, max_value=3000))
def test_chunk_sizes_cover_the_batch_with_a_short_tail(count: int) -> None:
    """Chunks add up to the batch, none past `WRITE_CHUNK`; a long batch ends in a short tail."""
    sizes = chunk_sizes(count)
    assert sum(sizes) == count
    assert all(0 < size <= WRITE_CHUNK for size in sizes)
    if count > 2 * WRITE_TAIL:
        assert sizes[-1] == WRITE_TAIL
        assert max(sizes[:-1]) - min(sizes[:-1]) <= 1


async def test_add_concurrent_writes_in_chunks_in_call_order(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """Many concurrent adds are embedded chunk by chunk, in call order, and all stored."""
    embedder = SlowEmbeddings()
    memory = make_memory(embedder=embedder)
    count = WRITE_CHUNK + 3 * WRITE_TAIL
    ids = await asyncio.gather(
        *(memory.add(f"turn number {n}", user_id="u", session_id="s") for n in range(count))
    )
    assert len(set(ids)) == count
    assert [len(call) for call in embedder.calls] == chunk_sizes(count)
    assert [text for call in embedder.calls for text in call] == [
        f"turn number {n}" for n in range(count)
    ]
    assert await memory.count_memories(user_id="u") == count


async def test_add_batch_failing_midway_keeps_earlier_chunks_and_retry_completes(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """A chunk whose embedding fails fails its batch; chunks before it stay written, and
    adding the batch again stores only what is missing."""
    embedder = SlowEmbeddings(fail_on_call=2)
    memory = make_memory(embedder=embedder)
    texts = [f"memory {n}" for n in range(3 * WRITE_TAIL)]
    first = chunk_sizes(len(texts))[0]
    with pytest.raises(ModelError):
        await asyncio.gather(*(memory.add(t, user_id="u", session_id="s") for t in texts))
    assert await memory.count_memories(user_id="u") == first
    embedder.fail_on_call = None
    await asyncio.gather(*(memory.add(t, user_id="u", session_id="s") for t in texts))
    assert await memory.count_memories(user_id="u") == len(texts)
    assert embedder.calls[-1] == texts[first:]
