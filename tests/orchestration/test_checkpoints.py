"""`CheckpointStore` rules, checked on every store: memory, a SQLite file, PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from memweave.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidArgument,
    ProviderClosed,
    SchemaMismatch,
)
from memweave.messages import ToolCall
from memweave.orchestration.checkpoints import (
    ApprovalDecision,
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    PendingRequest,
    checkpoint_store_from_url,
    thread_key,
)
from tests.orchestration._builders import redis_prefix_cleanup

Factory = Callable[..., CheckpointStore]


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.xdist_group("postgres")),
        pytest.param("redis", marks=pytest.mark.xdist_group("redis")),
    ]
)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Factory building stores of the backend under test; closes them afterwards, and deletes
    what the test wrote (its Redis keys, or its own PostgreSQL table)."""
    made: list[CheckpointStore] = []
    url = ""
    prefix = f"mwt-{uuid.uuid4().hex[:12]}"
    namespace = f"mwt_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'checkpoints.db'}"
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")

    def make(**options: Any) -> CheckpointStore:
        if request.param == "memory":
            store: CheckpointStore = InMemoryCheckpointStore(**options)
        elif request.param == "redis":
            store = checkpoint_store_from_url(url, namespace=prefix, **options)
        elif request.param == "postgres":
            store = checkpoint_store_from_url(url, namespace=namespace, **options)
        else:
            store = checkpoint_store_from_url(url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
    if request.param == "redis":
        await redis_prefix_cleanup(url, prefix)
    elif request.param == "postgres":
        await drop_checkpoint_table(url, namespace)


async def drop_checkpoint_table(url: str, namespace: str) -> None:
    """Drop the `<namespace>_checkpoints` table a test created (and nothing else)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from memweave.orchestration._checkpoints_sql import checkpoint_table

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(checkpoint_table(namespace=namespace).drop, checkfirst=True)
    finally:
        await engine.dispose()


def checkpoint(session_id: str = "s1", workflow: str = "w", **fields: Any) -> Checkpoint:
    values: dict[str, Any] = {"status": "running", "current_agent": "a", **fields}
    return Checkpoint(workflow=workflow, session_id=session_id, **values)


async def test_save_and_get_latest(make_store: Factory) -> None:
    """The newest saved checkpoint of a thread comes back, equal to what was saved."""
    store = make_store()
    first, second = checkpoint(), checkpoint(handoffs=2)
    await store.save_checkpoint(first)
    await store.save_checkpoint(second)
    assert await store.get_checkpoint("w", "s1") == second
    assert await store.get_checkpoint("w", "s1", first.id) == first


async def test_unknown_thread_or_id_reads_as_none(make_store: Factory) -> None:
    """A thread without checkpoints, or an id it lacks, gives None."""
    store = make_store()
    assert await store.get_checkpoint("w", "nobody") is None
    await store.save_checkpoint(checkpoint())
    assert await store.get_checkpoint("w", "s1", "f" * 32) is None
    assert await store.list_checkpoints("w", "nobody") == []


async def test_list_is_newest_first_with_limit(make_store: Factory) -> None:
    """Listing returns the thread's checkpoints newest first; `limit` keeps the newest."""
    store = make_store()
    saved = [checkpoint(tool_rounds=i) for i in range(4)]
    for item in saved:
        await store.save_checkpoint(item)
    assert await store.list_checkpoints("w", "s1") == saved[::-1]
    assert await store.list_checkpoints("w", "s1", limit=2) == saved[:1:-1]


async def test_save_is_idempotent_by_id(make_store: Factory) -> None:
    """Saving a checkpoint id again stores nothing new."""
    store = make_store()
    item = checkpoint()
    await store.save_checkpoint(item)
    await store.save_checkpoint(checkpoint())
    await store.save_checkpoint(item)
    assert len(await store.list_checkpoints("w", "s1")) == 2


@pytest.mark.parametrize(
    "session_id", ["a*b", "x:{y}", "100%_", 'it\'s "quoted"', "ünï", "ABC", "abc "]
)
async def test_threads_are_isolated_whatever_their_names(
    make_store: Factory, session_id: str
) -> None:
    """Workflow and session names never leak into each other, whatever characters they hold."""
    store = make_store()
    await store.save_checkpoint(checkpoint(session_id))
    await store.save_checkpoint(checkpoint("abc"))
    await store.save_checkpoint(checkpoint(session_id, workflow="other"))
    mine = await store.list_checkpoints("w", session_id)
    assert [c.session_id for c in mine] == [session_id]
    assert len(await store.list_checkpoints("w", "abc")) == 1


async def test_max_checkpoints_keeps_the_newest(make_store: Factory) -> None:
    """With `max_checkpoints=N` only the newest N of a thread remain."""
    store = make_store(max_checkpoints=2)
    saved = [checkpoint(tool_rounds=i) for i in range(5)]
    for item in saved:
        await store.save_checkpoint(item)
    assert await store.list_checkpoints("w", "s1") == [saved[4], saved[3]]
    assert await store.get_checkpoint("w", "s1", saved[0].id) is None


async def test_delete_removes_only_that_thread(make_store: Factory) -> None:
    """Deleting a thread's checkpoints leaves other threads alone; deleting twice is fine."""
    store = make_store()
    await store.save_checkpoint(checkpoint("s1"))
    await store.save_checkpoint(checkpoint("s2"))
    await store.delete_checkpoints("w", "s1")
    await store.delete_checkpoints("w", "s1")
    assert await store.get_checkpoint("w", "s1") is None
    assert await store.get_checkpoint("w", "s2") is not None


async def test_pending_requests_round_trip(make_store: Factory) -> None:
    """Pending requests, tool calls and decisions survive the JSON round trip."""
    store = make_store()
    item = checkpoint(
        status="waiting",
        pending=(
            PendingRequest(
                request_id="r1",
                kind="tool_approval",
                agent="a",
                tool_call=ToolCall(id="c1", name="refund", arguments='{"x": 1}'),
                decision=ApprovalDecision(approved=False, reason="no"),
            ),
        ),
        session={"v": 1, "id": "s1", "user_id": "ada", "state": {"memory": {"n": 1}}},
    )
    await store.save_checkpoint(item)
    assert await store.get_checkpoint("w", "s1") == item


async def test_stores_close_idempotently(make_store: Factory) -> None:
    """`aclose()` twice is fine, and `async with` binds the store."""
    async with make_store() as store:
        assert isinstance(store, CheckpointStore)
    await store.aclose()


def test_a_corrupt_document_is_reported() -> None:
    """Undecodable or invalid documents raise `CorruptRecord`; other versions `SchemaMismatch`."""
    with pytest.raises(CorruptRecord, match="not JSON"):
        Checkpoint.from_json(b"{nope", session_id="s1")
    with pytest.raises(CorruptRecord, match="status"):
        Checkpoint.from_json(
            b'{"v": 1, "workflow": "w", "session_id": "s", "status": "?", "current_agent": "a"}'
        )
    with pytest.raises(SchemaMismatch, match="99"):
        Checkpoint.from_json(b'{"v": 99}')


async def test_every_method_raises_provider_closed_after_aclose(make_store: Factory) -> None:
    """After `aclose()` (which may be called again), every method raises `ProviderClosed`
    naming the store and the method, and touches no storage."""
    store = make_store()
    saved = checkpoint()
    await store.save_checkpoint(saved)
    await store.aclose()
    await store.aclose()
    assert store.closed
    calls: dict[str, Callable[[], Any]] = {
        "save_checkpoint": lambda: store.save_checkpoint(checkpoint()),
        "get_checkpoint": lambda: store.get_checkpoint("w", "s1"),
        "list_checkpoints": lambda: store.list_checkpoints("w", "s1"),
        "delete_checkpoints": lambda: store.delete_checkpoints("w", "s1"),
    }
    for method, make_call in calls.items():
        with pytest.raises(ProviderClosed) as caught:
            await make_call()
        assert (caught.value.owner, caught.value.method) == (type(store).__name__, method)


async def test_redis_store_keys_raise_provider_closed_after_aclose() -> None:
    """`RedisCheckpointStore.keys` is closed with the store too."""
    pytest.importorskip("redis")
    from memweave.orchestration import RedisCheckpointStore

    store = RedisCheckpointStore("redis://127.0.0.1:1/0")
    assert store.keys(thread_key("w", "s1"))[0].startswith("memweave:checkpoints:{")
    await store.aclose()
    with pytest.raises(ProviderClosed, match=r"RedisCheckpointStore\.keys\(\)"):
        store.keys(thread_key("w", "s1"))


def test_thread_keys_are_digests() -> None:
    """Thread keys are fixed-length hex, distinct for distinct names."""
    keys = {thread_key("w", s) for s in ["a", "A", "a ", "w", '["w", "a"]']} | {
        thread_key("wa", "")
    }
    assert len(keys) == 6
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)


async def test_bad_arguments_are_rejected() -> None:
    """Bad options, thread names and ids raise typed errors naming them."""
    with pytest.raises(ConfigurationError, match="max_checkpoints"):
        InMemoryCheckpointStore(max_checkpoints=0)
    store = InMemoryCheckpointStore()
    with pytest.raises(InvalidArgument, match="session_id"):
        await store.get_checkpoint("w", "")
    with pytest.raises(InvalidArgument, match="checkpoint_id"):
        await store.get_checkpoint("w", "s", "bad id!")
    with pytest.raises(InvalidArgument, match="checkpoint"):
        await store.save_checkpoint({"id": "x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="chroma"):
        checkpoint_store_from_url("chroma:///tmp/x")
    assert isinstance(checkpoint_store_from_url("memory://"), InMemoryCheckpointStore)


async def test_sql_store_keeps_checkpoints_in_its_own_postgres_table(postgres_url: str) -> None:
    """On PostgreSQL the store creates `<namespace>_checkpoints` and reads back what it saved."""
    from sqlalchemy import inspect

    from memweave.orchestration import SQLCheckpointStore

    namespace = f"mwt_{uuid.uuid4().hex[:12]}"
    try:
        async with SQLCheckpointStore(postgres_url, namespace=namespace) as store:
            assert store.engine.dialect.name == "postgresql"
            saved = checkpoint(status="waiting", last_message_id="m1")
            await store.save_checkpoint(saved)
            await store.save_checkpoint(saved)
            assert await store.list_checkpoints("w", "s1") == [saved]
            async with store.engine.connect() as conn:
                tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            assert f"{namespace}_checkpoints" in tables
    finally:
        await drop_checkpoint_table(postgres_url, namespace)
