"""Background fact extraction of `VectorMemory.invoked`: off the turn, retried, flushed, logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from memweave.context import FactExtractor, VectorMemory
from memweave.errors import ModelError
from memweave.messages import ChatMessage
from memweave.session import Session
from tests.context._facts_scripts import FactModel
from tests.context.conftest import HashEmbeddings

MakeMemory = Callable[..., VectorMemory]
LOGGER = "memweave.context.facts"


def extractor(model: FactModel, **options: object) -> FactExtractor:
    options.setdefault("retry_wait", 0)
    return FactExtractor(model.client, **options)  # type: ignore[arg-type]


async def turn(memory: VectorMemory, session: Session, text: str) -> ChatMessage:
    said = ChatMessage.user(text)
    await memory.invoked(session, [said], [ChatMessage.assistant("Noted.")])
    return said


async def test_invoked_learns_facts_in_the_background(make_memory: MakeMemory) -> None:
    """`invoked` stores the turn at once and its facts once the queue is flushed."""
    model = FactModel()
    model.gate = asyncio.Event()
    memory = make_memory(extractor=extractor(model))
    session = Session(user_id="ada")
    said = await turn(memory, session, "Likes tea.")
    assert await memory.count_memories(user_id="ada", kind="turn") == 2
    assert await memory.count_memories(user_id="ada", kind="fact") == 0
    model.gate.set()
    await memory.flush()
    [fact] = await memory.search("tea", user_id="ada", kind="fact")
    assert fact.text == "Likes tea."
    [version] = await memory.history(fact.id, user_id="ada")
    assert version.source_message_ids[0] == said.id
    assert version.session_id == session.id
    stats = memory.extraction_stats
    assert (stats.queued, stats.pending, stats.completed, stats.failed) == (1, 0, 1, 0)


async def test_aclose_flushes_the_queue(tmp_path: Path, hash_embedder: HashEmbeddings) -> None:
    """`aclose()` processes every queued batch before it closes the memory."""
    model = FactModel()
    model.gate = asyncio.Event()
    memory = VectorMemory(tmp_path / "m", embedder=hash_embedder, extractor=extractor(model))
    await turn(memory, Session(user_id="ada"), "Likes tea.")
    await turn(memory, Session(user_id="ada"), "Has a cat.")
    model.gate.set()
    await memory.aclose()
    assert memory.extraction_stats.completed == 2
    async with VectorMemory(tmp_path / "m", embedder=hash_embedder) as reopened:
        assert await reopened.count_memories(user_id="ada", kind="fact") == 2


async def test_queue_retries_a_failing_model(
    make_memory: MakeMemory, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch whose model call fails is retried, and learned once the model answers."""
    model = FactModel()
    model.failures = [ModelError("server down"), ModelError("still down")]
    memory = make_memory(extractor=extractor(model, retry_attempts=3))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await turn(memory, Session(user_id="ada"), "Likes tea.")
        await memory.flush()
    assert await memory.count_memories(user_id="ada", kind="fact") == 1
    stats = memory.extraction_stats
    assert (stats.retries, stats.completed, stats.failed) == (2, 1, 0)
    assert "retrying" in caplog.text


async def test_queue_logs_and_counts_a_batch_it_gives_up(
    make_memory: MakeMemory, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch still failing after its retries is logged at ERROR with its message ids and
    counted as failed; the next batch is processed."""
    model = FactModel()
    model.failures = [ModelError("down")] * 2
    memory = make_memory(extractor=extractor(model, retry_attempts=2))
    session = Session(user_id="ada")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        lost = await turn(memory, session, "Likes tea.")
        await turn(memory, session, "Has a cat.")
        await memory.flush()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert lost.id in errors[0].getMessage()
    stats = memory.extraction_stats
    assert (stats.failed, stats.completed, stats.pending) == (1, 1, 0)
    [fact] = await memory.search("cat", user_id="ada", kind="fact")
    assert fact.text == "Has a cat."
    turns = await memory.search("Likes tea.", user_id="ada", kind="turn", k=1)
    assert [hit.text for hit in turns] == ["Likes tea."]  # the lost batch's turn is kept


async def test_full_queue_holds_the_caller_back(make_memory: MakeMemory) -> None:
    """With the queue full, `invoked` waits for room instead of dropping a batch."""
    model = FactModel()
    model.gate, model.called = asyncio.Event(), asyncio.Event()
    memory = make_memory(extractor=extractor(model, queue_size=1))
    session = Session(user_id="ada")
    await turn(memory, session, "Likes tea.")
    await model.called.wait()  # the worker has taken the first batch
    await turn(memory, session, "Has a cat.")  # fills the queue
    third = asyncio.create_task(turn(memory, session, "Lives in Lyon."))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not third.done()
    model.gate.set()
    await third
    await memory.flush()
    stats = memory.extraction_stats
    assert (stats.queued, stats.completed, stats.failed) == (3, 3, 0)
    assert await memory.count_memories(user_id="ada", kind="fact") == 3


def test_batches_left_in_an_ended_loop_are_logged(
    tmp_path: Path, hash_embedder: HashEmbeddings, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch still queued when its event loop ends without `flush()` is logged at ERROR with
    its ids and counted as failed, never dropped silently."""
    model = FactModel()
    memory = VectorMemory(tmp_path / "m", embedder=hash_embedder, extractor=extractor(model))

    async def leave_early() -> ChatMessage:
        model.gate = asyncio.Event()  # never set: extraction is still running at the end
        model.called = asyncio.Event()
        said = await turn(memory, Session(user_id="ada"), "Likes tea.")
        await model.called.wait()
        return said

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        said = asyncio.run(leave_early())
    asyncio.run(memory.aclose())
    assert memory.extraction_stats.failed == 1
    assert said.id in caplog.text
