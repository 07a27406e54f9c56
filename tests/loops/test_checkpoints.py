"""Checkpoint stores from any event loop: built from a URL they work in every loop; given a
client or engine they refuse another loop with `EventLoopMismatch`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from memweave import EventLoopMismatch
from memweave.orchestration import Checkpoint, CheckpointStore, checkpoint_store_from_url
from tests.conformance._harness import BackendHarness
from tests.loops.conftest import RUNS, in_thread_loop


def _checkpoint(session_id: str, n: int) -> Checkpoint:
    return Checkpoint(workflow="wf", session_id=session_id, status="idle", current_agent=f"a{n}")


def _close(store: CheckpointStore, *session_ids: str) -> None:
    async def close() -> None:
        try:
            for session_id in session_ids:
                await store.delete_checkpoints("wf", session_id)
        finally:
            await store.aclose()

    asyncio.run(close())


@pytest.mark.usefixtures("no_unclosed_connections")
def test_consecutive_asyncio_runs_share_one_store(store_url: str, session_id: str) -> None:
    """One store serves 50 consecutive `asyncio.run` calls: each saves and lists, and every
    checkpoint is stored once, in order; each loop's connections close with it."""
    store = checkpoint_store_from_url(store_url)
    saved = [_checkpoint(session_id, n) for n in range(RUNS)]

    async def step(n: int) -> list[str]:
        await store.save_checkpoint(saved[n])
        assert await store.get_checkpoint("wf", session_id) == saved[n]
        return [c.id for c in await store.list_checkpoints("wf", session_id)]

    try:
        for n in range(RUNS):
            assert asyncio.run(step(n)) == [c.id for c in reversed(saved[: n + 1])]
        assert asyncio.run(store.list_checkpoints("wf", session_id)) == saved[::-1]
    finally:
        _close(store, session_id)


@pytest.mark.usefixtures("no_unclosed_connections")
def test_a_thread_with_its_own_loop_shares_the_store(
    store_url: str, new_session_id: Callable[[str], str]
) -> None:
    """A thread running its own loop saves checkpoints while the main loop does; each
    thread's checkpoints are stored once, newest first."""
    store = checkpoint_store_from_url(store_url)
    own = {"main": new_session_id("-main"), "thread": new_session_id("-thread")}
    saved = {name: [_checkpoint(own[name], n) for n in range(15)] for name in own}
    start = threading.Barrier(2)

    async def saver(name: str) -> None:
        await asyncio.to_thread(start.wait, 30)
        for checkpoint in saved[name]:
            await store.save_checkpoint(checkpoint)
            assert await store.get_checkpoint("wf", own[name]) == checkpoint

    async def main() -> None:
        await asyncio.gather(saver("main"), in_thread_loop(lambda: saver("thread"))())

    try:
        asyncio.run(main())
        for name in own:
            assert asyncio.run(store.list_checkpoints("wf", own[name])) == saved[name][::-1]
    finally:
        _close(store, *own.values())


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.xdist_group(name))
        for name in ("sqlite_harness", "postgres_harness", "mysql_harness")
    ]
)
def sql_url(request: pytest.FixtureRequest) -> str:
    """The URL of a SQL backend."""
    harness: BackendHarness = request.getfixturevalue(request.param)
    assert harness.url is not None
    return harness.url


def _check_refused(store: CheckpointStore, session_id: str, resource: str) -> None:
    with pytest.raises(EventLoopMismatch) as caught:
        asyncio.run(store.list_checkpoints("wf", session_id))
    assert caught.value.owner == type(store).__name__
    assert caught.value.resource == resource
    with pytest.raises(EventLoopMismatch):
        asyncio.run(store.save_checkpoint(_checkpoint(session_id, 1)))


def test_sql_store_given_an_engine_refuses_another_loop(sql_url: str, session_id: str) -> None:
    """A store given an engine serves the loop that first used it; another loop gets
    `EventLoopMismatch` before the engine is touched."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from memweave.orchestration import SQLCheckpointStore

    engine = create_async_engine(sql_url)
    store = SQLCheckpointStore(client=engine)
    checkpoint = _checkpoint(session_id, 0)

    async def first() -> None:
        try:
            await store.save_checkpoint(checkpoint)
            assert await store.get_checkpoint("wf", session_id) == checkpoint
        finally:
            await engine.dispose()  # the caller's engine, closed by the caller

    asyncio.run(first())
    _check_refused(store, session_id, "the engine passed in")
    asyncio.run(store.aclose())
    _close(SQLCheckpointStore(sql_url), session_id)


def test_redis_store_given_a_client_refuses_another_loop(redis_url: str, session_id: str) -> None:
    """A store given a client serves the loop that first used it; another loop gets
    `EventLoopMismatch` before the client is touched."""
    from memweave.orchestration import RedisCheckpointStore
    from memweave.providers.redis import client_from_url

    client = client_from_url(redis_url)
    store = RedisCheckpointStore(client=client)
    checkpoint = _checkpoint(session_id, 0)

    async def first() -> None:
        try:
            await store.save_checkpoint(checkpoint)
            assert await store.get_checkpoint("wf", session_id) == checkpoint
        finally:
            await client.aclose()  # the caller's client, closed by the caller

    asyncio.run(first())
    _check_refused(store, session_id, "the client passed in")
    asyncio.run(store.aclose())
    _close(RedisCheckpointStore(redis_url), session_id)
