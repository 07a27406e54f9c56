"""Batched ingest: concurrent adds are embedded and written in chunks, in order, embedding the
next chunk while the last one is written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave.context import VectorMemory
from memweave.context._vector_writes import WRITE_CHUNK, WRITE_TAIL, chunk_sizes
from memweave.errors import ConfigurationError, ModelError
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


class PacedEmbeddings(HashEmbeddings):
    """An embedder that says when its model runs begin (as `ChromaDefaultEmbeddings` does):
    each embed call is one run, begun after a short tokenising pause; records the order of
    runs begun and of the waits the writes make."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self._started = 0
        self._condition = threading.Condition()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(0.02)  # tokenising: the model has not begun
        with self._condition:
            self._started += 1
            self.events.append(("run", self._started))
            self._condition.notify_all()
        await asyncio.sleep(0.02)
        return await super().embed(texts)

    def runs_started(self) -> int:
        with self._condition:
            return self._started

    def wait_until_running(self, since: int, timeout: float) -> None:
        with self._condition:
            began = self._condition.wait_for(lambda: self._started > since, timeout)
            self.events.append(("write" if began else "write without waiting", since))


async def test_a_write_beside_the_next_embedding_waits_for_its_model_run(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """With an embedder that reports its runs, each chunk's write (but the last) starts only
    once the next chunk's model run has begun: embedded Chroma holds the GIL for a whole
    insert, which would otherwise stall the next chunk before its model runs."""
    embedder = PacedEmbeddings()
    memory = make_memory(embedder=embedder)
    count = WRITE_CHUNK + 3 * WRITE_TAIL
    await asyncio.gather(
        *(memory.add(f"turn number {n}", user_id="u", session_id="s") for n in range(count))
    )
    chunks = len(chunk_sizes(count))
    writes = [event for event in embedder.events if event[0] != "run"]
    assert writes == [("write", n) for n in range(1, chunks)]
    for write in writes:  # after the run of the next chunk
        assert embedder.events.index(("run", write[1] + 1)) < embedder.events.index(write)
    assert await memory.count_memories(user_id="u") == count


class StreamingEmbeddings(HashEmbeddings):
    """An embedder that embeds several parts as one stream (as `ChromaDefaultEmbeddings`
    does); can fail at a part, or give a part one vector too few."""

    def __init__(
        self, *, fail_at: int | None = None, short_at: int | None = None, extra: int = 0
    ) -> None:
        super().__init__()
        self.fail_at, self.short_at, self.extra = fail_at, short_at, extra
        self.streams: list[list[list[str]]] = []
        self.yielded = 0
        self.closed = False

    async def embed_parts(self, parts: Sequence[Sequence[str]]) -> AsyncGenerator[Any, None]:
        self.streams.append([list(part) for part in parts])
        try:
            # `extra` parts more than asked (or, negative, fewer): a broken embedder.
            given = [*parts, *[["extra"]] * self.extra][: len(parts) + self.extra]
            for number, part in enumerate(given):
                await asyncio.sleep(0.005)
                if number == self.fail_at:
                    raise ModelError("the model is down")
                vectors = [self.vector(text) for text in part]
                self.yielded += 1
                yield vectors[:-1] if number == self.short_at else vectors
        finally:
            self.closed = True


async def test_streaming_embedder_gets_every_chunk_in_one_stream(
    make_memory: Callable[..., VectorMemory],
) -> None:
    """With an embedder that streams, a batch's chunks go to it in one `embed_parts` call, in
    call order, and every memory is stored and found."""
    embedder = StreamingEmbeddings()
    memory = make_memory(embedder=embedder)
    count = WRITE_CHUNK + 3 * WRITE_TAIL
    ids = await asyncio.gather(
        *(memory.add(f"turn number {n}", user_id="u", session_id="s") for n in range(count))
    )
    assert embedder.calls == []  # never `embed`
    [stream] = embedder.streams
    assert [len(part) for part in stream] == chunk_sizes(count)
    assert [text for part in stream for text in part] == [f"turn number {n}" for n in range(count)]
    assert await memory.count_memories(user_id="u") == count
    [hit, *_] = await memory.search("turn number 77", user_id="u", mode="lexical")
    assert hit.id == ids[77]


@pytest.mark.parametrize("failure", ["fail_at", "short_at"])
async def test_streaming_failure_keeps_earlier_chunks_and_closes_the_stream(
    make_memory: Callable[..., VectorMemory], failure: str
) -> None:
    """A stream that fails at its second chunk (ModelError), or gives it too few vectors
    (ConfigurationError), fails the batch: the first chunk stays written, the stream is
    closed, and adding the batch again stores only what is missing."""
    embedder = StreamingEmbeddings(**{failure: 1})
    memory = make_memory(embedder=embedder)
    texts = [f"memory {n}" for n in range(3 * WRITE_TAIL)]
    first = chunk_sizes(len(texts))[0]
    error = ModelError if failure == "fail_at" else ConfigurationError
    with pytest.raises(error):
        await asyncio.gather(*(memory.add(t, user_id="u", session_id="s") for t in texts))
    assert embedder.closed
    assert embedder.yielded == (1 if failure == "fail_at" else 2)
    assert await memory.count_memories(user_id="u") == first
    embedder.fail_at = embedder.short_at = None
    await asyncio.gather(*(memory.add(t, user_id="u", session_id="s") for t in texts))
    assert await memory.count_memories(user_id="u") == len(texts)
    assert [text for part in embedder.streams[-1] for text in part] == texts[first:]


@pytest.mark.parametrize("extra", [1, -1])
async def test_streaming_embedder_yielding_another_number_of_parts_is_refused(
    make_memory: Callable[..., VectorMemory], extra: int
) -> None:
    """A stream that yields more parts than it was given, or ends early, fails the batch with
    ConfigurationError; the parts that matched stay written."""
    embedder = StreamingEmbeddings(extra=extra)
    memory = make_memory(embedder=embedder)
    texts = [f"memory {n}" for n in range(3 * WRITE_TAIL)]
    with pytest.raises(ConfigurationError, match="parts"):
        await asyncio.gather(*(memory.add(t, user_id="u", session_id="s") for t in texts))
    written = len(texts) if extra > 0 else sum(chunk_sizes(len(texts))[:extra])
    assert await memory.count_memories(user_id="u") == written
