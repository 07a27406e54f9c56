"""Timeouts and retries: the retry policy on real coroutines, then each backend on real servers
(which failures count as transient, how a timeout is reported, and that a connection the server
killed is replaced without an error reaching the caller).

Servers this module pauses are its own (a `redis-server` on a free loopback port, stopped by
pid); on the shared servers it only locks its own tables and kills its own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from memweave import ChatMessage
from memweave.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    InvalidMessage,
    MemweaveError,
)
from memweave.orchestration import Checkpoint, RedisCheckpointStore, SQLCheckpointStore
from memweave.providers import ChatHistoryProvider, from_url
from memweave.providers._resilience import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    CallPolicy,
    resolve_options,
)
from memweave.providers.redis import RedisChatHistoryProvider
from memweave.providers.sql import SQLChatHistoryProvider
from tests.conformance._builders import make_messages
from tests.conformance._harness_chroma import chroma_server_url
from tests.conformance._harness_sql import DEFAULT_MYSQL_URL, DEFAULT_POSTGRES_URL, check_reachable
from tests.conftest import service_unavailable

__all__ = ["chroma_server_url"]  # the fixture, shared with the conformance suite

REDIS_URL = os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# -- the policy, on real coroutines ---------------------------------------------------------


def _flaky(failures: list[BaseException], result: str = "ok") -> tuple[list[int], Any]:
    """A call that raises each of `failures` in turn, then returns `result`; and its count."""
    attempts: list[int] = []

    async def call() -> str:
        attempts.append(1)
        if len(attempts) <= len(failures):
            raise failures[len(attempts) - 1]
        return result

    return attempts, call


async def _run(policy: CallPolicy, call: Any, *, retry: bool = True) -> Any:
    return await policy.run("count_messages", contextlib.nullcontext, call, retry=retry, url="")


async def test_call_policy_retries_a_transient_failure_until_it_succeeds() -> None:
    """Transient failures are retried, and the call's result comes back."""
    reset = BackendUnavailable("connection reset", transient=True)
    attempts, call = _flaky([reset, reset])
    assert await _run(CallPolicy(5.0, 3), call) == "ok"
    assert len(attempts) == 3


async def test_call_policy_raises_the_last_failure_once_retries_are_spent() -> None:
    """After `retries` retries the last transient failure is raised as it was."""
    failures = [BackendUnavailable(f"refused {i}", transient=True) for i in range(5)]
    attempts, call = _flaky(failures)
    with pytest.raises(BackendUnavailable) as raised:
        await _run(CallPolicy(5.0, 2), call)
    assert raised.value is failures[2]
    assert len(attempts) == 3


@pytest.mark.parametrize(
    "failure",
    [
        BackendUnavailable("permission denied", transient=False),
        InvalidMessage("bad", field="content"),
        ConfigurationError("missing tables"),
    ],
    ids=type,
)
async def test_call_policy_never_retries_a_non_transient_failure(failure: MemweaveError) -> None:
    """A failure that is not transient is raised after one attempt."""
    attempts, call = _flaky([failure])
    with pytest.raises(type(failure)):
        await _run(CallPolicy(5.0, 3), call)
    assert len(attempts) == 1


async def test_call_policy_never_retries_a_timeout() -> None:
    """A driver's timeout is not retried (no time is left), and names the call."""
    attempts, call = _flaky([BackendTimeout("a SQL statement", 2.0)])
    with pytest.raises(BackendTimeout) as raised:
        await _run(CallPolicy(5.0, 3), call)
    assert len(attempts) == 1
    assert (raised.value.operation, raised.value.timeout) == ("count_messages", 2.0)


async def test_call_policy_does_not_retry_a_call_marked_unsafe() -> None:
    """With `retry=False` (a non-idempotent edit), even a transient failure runs once."""
    attempts, call = _flaky([BackendUnavailable("reset", transient=True)])
    with pytest.raises(BackendUnavailable):
        await _run(CallPolicy(5.0, 3), call, retry=False)
    assert len(attempts) == 1


async def test_call_policy_times_out_naming_the_call_and_the_limit() -> None:
    """A call still running at `timeout` raises `BackendTimeout` naming it and the limit."""

    async def stuck() -> None:
        await asyncio.sleep(60)

    with pytest.raises(BackendTimeout) as raised:
        await CallPolicy(0.2, 3).run(
            "list_sessions", contextlib.nullcontext, stuck, retry=True, url="redis://h:1/0"
        )
    error = raised.value
    assert (error.operation, error.timeout, error.transient) == ("list_sessions", 0.2, True)
    assert "list_sessions" in str(error)
    assert "0.2 s" in str(error)
    assert isinstance(error, TimeoutError)


async def test_call_policy_leaves_no_cancellation_behind_a_call_that_finished() -> None:
    """A call done before its deadline is never cancelled later, whatever the task does next."""

    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await _run(CallPolicy(0.1, 0), quick) == "done"
    await asyncio.sleep(0.3)  # past the deadline the call had
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_call_policy_times_out_only_the_call_past_its_deadline() -> None:
    """Concurrent calls with different limits: only the one past its own deadline times out."""

    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    short = _run(CallPolicy(0.1, 0), lambda: nap(30))
    long = _run(CallPolicy(30.0, 0), lambda: nap(0.3))
    results = await asyncio.gather(short, long, return_exceptions=True)
    assert isinstance(results[0], BackendTimeout)
    assert results[1] == "rested"


async def test_call_policy_lets_an_outside_cancellation_through() -> None:
    """Cancelling the caller's task cancels the call; it is not reported as a timeout."""
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(_run(CallPolicy(30.0, 3), stuck))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_call_policy_returns_what_a_call_swallowing_the_cancel_returns() -> None:
    """A driver that swallows the cancellation still ends the call's watch cleanly."""

    async def stubborn() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    assert await _run(CallPolicy(0.1, 0), stubborn) == "swallowed"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@given(st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_resolve_options_reads_any_positive_timeout_from_the_url(value: float) -> None:
    """`?timeout=<seconds>` is read exactly and taken out of the URL."""
    url, timeout, retries = resolve_options(
        f"redis://h:1/0?timeout={value!r}&db=2", DEFAULT_TIMEOUT, DEFAULT_RETRIES
    )
    assert (url, timeout, retries) == ("redis://h:1/0?db=2", value, DEFAULT_RETRIES)


def test_resolve_options_keeps_other_query_parameters_verbatim() -> None:
    """Only `timeout` and `retries` leave the URL; the rest reaches the driver unchanged."""
    url = "postgresql+asyncpg://u:p%40ss@h/db?ssl=require&timeout=3&application_name=a%20b"
    assert resolve_options(url, DEFAULT_TIMEOUT, DEFAULT_RETRIES) == (
        "postgresql+asyncpg://u:p%40ss@h/db?ssl=require&application_name=a%20b",
        3.0,
        DEFAULT_RETRIES,
    )


# -- servers --------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The shared PostgreSQL server; skips when it is down."""
    url = os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    check_reachable(url, "PostgreSQL")
    return url


@pytest.fixture(scope="module")
def mysql_url() -> str:
    """The shared MariaDB/MySQL server; skips when it is down."""
    url = os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    check_reachable(url, "MariaDB/MySQL")
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgres", "mysql"])
def sql_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each SQL database under test."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('retries') / 'chat.db'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def server_url(request: pytest.FixtureRequest) -> str:
    """Each SQL database server under test."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def make_sql() -> AsyncIterator[Callable[..., SQLChatHistoryProvider]]:
    """Factory of SQL providers in a private namespace, whose tables it drops after."""
    made: list[tuple[SQLChatHistoryProvider, str]] = []

    def make(url: str, **options: Any) -> SQLChatHistoryProvider:
        namespace = f"mwr{uuid.uuid4().hex[:10]}"
        provider = SQLChatHistoryProvider(url, namespace=namespace, **options)
        made.append((provider, url.split("?")[0]))
        return provider

    yield make
    for provider, url in made:
        with contextlib.suppress(MemweaveError):
            await provider.aclose()
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(provider.metadata.drop_all)
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def _locked(provider: SQLChatHistoryProvider) -> AsyncIterator[None]:
    """Hold, from another connection, a lock every write of `provider` waits for."""
    url = provider.engine.url
    sessions = f"{provider.table_prefix}sessions"
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(str(url.database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                await conn.execute(text(f"LOCK TABLE {sessions} IN ACCESS EXCLUSIVE MODE"))
            else:
                await conn.execute(text(f"SELECT * FROM {sessions} FOR UPDATE"))
            try:
                yield
            finally:
                await conn.rollback()
    finally:
        await engine.dispose()


async def test_add_messages_times_out_behind_a_lock_naming_the_call_and_limit(
    make_sql: Callable[..., SQLChatHistoryProvider], sql_url: str
) -> None:
    """A write held up past `timeout` raises `BackendTimeout` naming the call and the limit."""
    history = make_sql(sql_url, timeout=1)
    await history.add_messages("s", make_messages(1))
    async with _locked(history):
        with pytest.raises(BackendTimeout) as raised:
            await history.add_messages("s", [ChatMessage.user("held up")])
    error = raised.value
    assert (error.operation, error.timeout) == ("add_messages", 1.0)
    assert "add_messages" in error.reason
    assert "1 s" in error.reason


async def test_call_after_a_timeout_works_on_the_same_provider(
    make_sql: Callable[..., SQLChatHistoryProvider], sql_url: str
) -> None:
    """A call cut off by its timeout leaves no broken connection behind: the next one works."""
    history = make_sql(sql_url, timeout=1, retries=0)
    first = ChatMessage.user("first")
    await history.add_messages("s", [first])
    async with _locked(history):
        with pytest.raises(BackendTimeout):
            await history.add_messages("s", [ChatMessage.user("held up")])
    after = ChatMessage.user("after")
    await history.add_messages("s", [after])
    ids = [message.id for message in await history.list_messages("s")]
    assert ids[0] == first.id
    assert ids[-1] == after.id


async def test_add_messages_reports_the_driver_command_timeout_with_its_limit(
    make_sql: Callable[..., SQLChatHistoryProvider], postgres_url: str
) -> None:
    """asyncpg's `?command_timeout=` gives a `BackendTimeout` with a reason and that limit."""
    history = make_sql(f"{postgres_url}?command_timeout=0.5")
    await history.add_messages("s", make_messages(1))
    async with _locked(history):
        with pytest.raises(BackendTimeout) as raised:
            await history.add_messages("s", [ChatMessage.user("held up")])
    assert (raised.value.operation, raised.value.timeout) == ("add_messages", 0.5)
    assert "add_messages" in raised.value.reason


async def _own_connection_ids(conn: AsyncConnection) -> list[int]:
    """The server-side id of the connection `conn` runs on."""
    if conn.dialect.name == "postgresql":
        return [int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())]
    return [int((await conn.execute(text("SELECT CONNECTION_ID()"))).scalar_one())]


async def _kill_pooled_connections(provider: SQLChatHistoryProvider) -> None:
    """Kill, server-side, the connections in `provider`'s pool, and wait until they are gone."""
    async with provider.engine.connect() as conn:
        ids = await _own_connection_ids(conn)
    postgres = provider.engine.dialect.name == "postgresql"
    killer = create_async_engine(provider.engine.url)
    try:
        async with killer.connect() as conn:
            for ident in ids:
                kill = f"SELECT pg_terminate_backend({ident})" if postgres else f"KILL {ident}"
                await conn.execute(text(kill))
            listed = (
                "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
                if postgres
                else "SELECT count(*) FROM information_schema.processlist WHERE id = :id"
            )
            for _ in range(200):
                alive = [i for i in ids if (await conn.execute(text(listed), {"id": i})).scalar()]
                await conn.rollback()  # PostgreSQL's activity view is a snapshot per transaction
                if not alive:
                    return
                await asyncio.sleep(0.05)
            pytest.fail(f"connections {ids} survived being killed")
    finally:
        await killer.dispose()


CALLS: dict[str, Callable[[ChatHistoryProvider, str], Awaitable[object]]] = {
    "add_messages": lambda h, s: h.add_messages(s, make_messages(1, text="after")),
    "list_messages": lambda h, s: h.list_messages(s),
    "count_messages": lambda h, s: h.count_messages(s),
    "delete_messages": lambda h, s: h.delete_messages(s, ["no-such-id"]),
    "truncate_after": lambda h, s: h.truncate_after(s, "m-0"),
    "clear": lambda h, s: h.clear(s),
    "list_sessions": lambda h, s: h.list_sessions(prefix=s),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_first_call_after_the_server_killed_idle_connections_succeeds(
    make_sql: Callable[..., SQLChatHistoryProvider], server_url: str, call: str
) -> None:
    """Pooled connections the server killed while idle are replaced: no call fails for it."""
    history = make_sql(server_url)
    await history.add_messages("s", [ChatMessage.user("m", id="m-0")])
    await _kill_pooled_connections(history)
    await CALLS[call](history, "s")
    assert await history.count_messages("s") in (0, 1, 2)


async def test_idle_kill_is_a_transient_failure_when_retries_are_off(
    make_sql: Callable[..., SQLChatHistoryProvider], server_url: str
) -> None:
    """With `retries=0`, the dead connection shows as a transient `BackendUnavailable`."""
    history = make_sql(server_url, retries=0)
    await history.add_messages("s", make_messages(1))
    await _kill_pooled_connections(history)
    with pytest.raises(BackendUnavailable) as raised:
        await history.count_messages("s")
    assert raised.value.transient
    assert not isinstance(raised.value, BackendTimeout)
    assert await history.count_messages("s") == 1  # the pool recovered


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The shared Redis server; skips when it is down."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {REDIS_URL}", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="module")
def own_redis() -> Iterator[Any]:
    """A `redis-server` of this module's own on a free loopback port (it may be paused)."""
    from memweave.bench._scale_redis import RedisProcesses, redis_server_available

    missing = redis_server_available()
    if missing is not None:
        service_unavailable("a local redis-server", missing)
    server = RedisProcesses(1)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.stop()
        service_unavailable("a local redis-server", str(exc))
    yield server
    server.stop()


@contextlib.contextmanager
def _paused(server: Any) -> Iterator[None]:
    pid = server.processes[0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("retries", [0, 3])
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_first_call_after_the_server_killed_the_connection_succeeds_on_redis(
    redis_url: str, call: str, retries: int
) -> None:
    """A pooled connection Redis killed (`CLIENT KILL`) is replaced when next taken."""
    import redis.asyncio as aredis

    name = f"mwr-{uuid.uuid4().hex[:12]}"
    history = from_url(f"{redis_url}?client_name={name}", namespace=name, retries=retries)
    admin = aredis.Redis.from_url(redis_url)
    try:
        await history.add_messages("s", [ChatMessage.user("m", id="m-0")])
        killed = 0
        for client in await admin.client_list():
            if client.get("name") == name:
                killed += await admin.client_kill_filter(_id=client["id"])
        assert killed >= 1
        await CALLS[call](history, "s")
        assert await history.count_messages("s") in (0, 1, 2)
    finally:
        await history.clear("s")
        await history.aclose()
        await admin.aclose()


async def test_call_on_a_paused_redis_times_out_naming_the_call(own_redis: Any) -> None:
    """A paused server gives `BackendTimeout` naming the call; after it resumes, the same
    provider works again."""
    history = from_url(own_redis.url, timeout=0.5)
    try:
        await history.add_messages("s", make_messages(1))
        with _paused(own_redis), pytest.raises(BackendTimeout) as raised:
            await history.count_messages("s")
        assert (raised.value.operation, raised.value.timeout) == ("count_messages", 0.5)
        assert await history.count_messages("s") == 1
    finally:
        await history.clear("s")
        await history.aclose()


async def test_wrong_type_reply_is_not_retried_on_redis(own_redis: Any) -> None:
    """A key holding another type is a `ConfigurationError`, sent to the server once."""
    import redis.asyncio as aredis

    history = from_url(own_redis.url, namespace=f"mwr{uuid.uuid4().hex[:8]}", retries=3)
    admin = aredis.Redis.from_url(own_redis.url)
    try:
        assert isinstance(history, RedisChatHistoryProvider)
        await admin.set(history._session_keys("s").msgs, "not a list")
        before = (await admin.info("commandstats")).get("cmdstat_llen", {}).get("calls", 0)
        with pytest.raises(ConfigurationError, match="WRONGTYPE"):
            await history.count_messages("s")
        after = (await admin.info("commandstats"))["cmdstat_llen"]["calls"]
        assert after - before == 1
    finally:
        await admin.delete(history._session_keys("s").msgs)
        await history.aclose()
        await admin.aclose()


async def test_redis_checkpoint_store_times_out_naming_the_call(own_redis: Any) -> None:
    """The Redis checkpoint store holds its calls to `timeout` too."""
    store = RedisCheckpointStore(f"{own_redis.url}?timeout=0.5&retries=1")
    checkpoint = Checkpoint(workflow="w", session_id="s", status="idle", current_agent="a")
    try:
        assert (store.timeout, store.retries) == (0.5, 1)
        with _paused(own_redis), pytest.raises(BackendTimeout) as raised:
            await store.save_checkpoint(checkpoint)
        assert raised.value.operation == "save_checkpoint"
        await store.save_checkpoint(checkpoint)
        assert await store.get_checkpoint("w", "s") == checkpoint
    finally:
        await store.delete_checkpoints("w", "s")
        await store.aclose()


# -- unreachable servers: transient, retried --------------------------------------------------


def _unreachable(kind: str, tmp_path: Path) -> str:
    port = _free_port()
    return {
        "redis": f"redis://127.0.0.1:{port}/0",
        "postgres": f"postgresql+asyncpg://root@127.0.0.1:{port}/test",
        "mysql": f"mysql+aiomysql://root@127.0.0.1:{port}/test",
        "chroma_server": f"chroma+http://127.0.0.1:{port}",
    }[kind]


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql", "chroma_server"])
async def test_unreachable_server_is_transient_and_retried(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection is a transient `BackendUnavailable`, retried `retries` times."""
    if kind == "chroma_server":
        pytest.importorskip("chromadb")
    history = from_url(_unreachable(kind, tmp_path), retries=2)
    try:
        with (
            caplog.at_level(logging.INFO, logger="memweave"),
            pytest.raises(BackendUnavailable) as raised,
        ):
            await history.count_messages("s")
    finally:
        with contextlib.suppress(MemweaveError):
            await history.aclose()
    assert raised.value.transient
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 2


async def test_sql_checkpoint_store_takes_timeout_and_retries_from_its_url(
    tmp_path: Path,
) -> None:
    """The SQL checkpoint store reads `?timeout=` and `?retries=` and still works."""
    store = SQLCheckpointStore(f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}?timeout=2&retries=1")
    checkpoint = Checkpoint(workflow="w", session_id="s", status="idle", current_agent="a")
    try:
        assert (store.timeout, store.retries) == (2.0, 1)
        await store.save_checkpoint(checkpoint)
        assert await store.get_checkpoint("w", "s") == checkpoint
    finally:
        await store.aclose()


def test_sync_face_passes_timeout_and_retries_through(tmp_path: Path) -> None:
    """`memweave.sync` builds the async provider with the same options, URL ones included."""
    from memweave import sync

    with sync.from_url("memory://?timeout=2.5&retries=1") as history:
        assert (history.timeout, history.retries) == (2.5, 1)
    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}?retries=0"
    with sync.SQLChatHistoryProvider(url, timeout=None) as history:
        assert (history.timeout, history.retries) == (None, 0)
        history.add_messages("s", make_messages(2))
        assert history.count_messages("s") == 2


async def test_history_benchmark_emits_the_wrapper_overhead_fields() -> None:
    """`memweave.bench.history`'s overhead rows carry both p50s and the paired difference."""
    from memweave.bench._history_overhead import bench_overhead

    [row] = await bench_overhead("memory", "memory://", 5)
    assert row.variant == "timeout+retries"
    assert row.samples == 5
    assert row.p50_ms > 0
    assert row.bare_p50_ms > 0
    assert isinstance(row.overhead_pct, float)


@pytest.mark.parametrize(
    ("reply", "transient"),
    [
        ("LOADING Redis is loading the dataset in memory", True),
        ("TRYAGAIN Multiple keys request during rehashing of slot", True),
        ("CLUSTERDOWN The cluster is down", True),
        ("MOVED 3999 127.0.0.1:6381", True),
        ("READONLY You can't write against a read only replica.", True),
        ("BUSY Redis is busy running a script.", True),
        ("OOM command not allowed when used memory > 'maxmemory'.", False),
        ("ERR Error running script: bad argument", False),
        ("NOPERM this user has no permissions to run the 'evalsha' command", False),
    ],
)
def test_redis_error_replies_are_classified(reply: str, transient: bool) -> None:
    """Redis replies a later attempt may not get are transient; the others are not."""
    import redis.exceptions

    from memweave.providers._redis_client import map_redis_errors

    error = redis.exceptions.ResponseError(reply)
    mapping = map_redis_errors("redis://h:1/0", timeout=1.0, prefix="p", owner="o", bound_to="c")
    with pytest.raises(BackendUnavailable) as raised, mapping:
        raise error
    assert raised.value.transient is transient


async def test_chroma_server_client_requests_get_the_timeout(chroma_server_url: str) -> None:
    """A Chroma server's client built from a URL sends its requests with `timeout`."""
    import httpx

    from memweave.providers.chroma import ChromaChatHistoryProvider

    history = ChromaChatHistoryProvider(chroma_server_url, timeout=3.5, namespace="mwr-timeout")
    try:
        await history.count_messages("s")
        session = history._client._server._session
        assert session.timeout == httpx.Timeout(3.5)
    finally:
        await history._run(lambda _: history._client.delete_collection(history.collection_name))
        await history.aclose()


class _SlowEmbeddings:
    """A real embedder that takes `delay` seconds per batch (a large model on a busy CPU)."""

    name = "memweave-test-slow"
    dimensions = 8

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.batches = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(self.delay)
        self.batches += 1
        return [[float(len(text) % 7 + 1), *([1.0] * (self.dimensions - 1))] for text in texts]


async def test_add_messages_on_chroma_does_not_count_embedding_against_the_timeout(
    tmp_path: Path,
) -> None:
    """Chroma's `timeout` bounds its calls to Chroma, not an embedder slower than it."""
    pytest.importorskip("chromadb")
    from memweave.providers.chroma import ChromaChatHistoryProvider

    embedder = _SlowEmbeddings(delay=4.0)
    history = ChromaChatHistoryProvider(
        f"chroma://{tmp_path / 'slow'}", embedder=embedder, timeout=3.0, retries=0
    )
    try:
        await history.count_messages("s")  # opens the collection
        await asyncio.gather(*(history.add_messages(f"s{i}", make_messages(2)) for i in range(3)))
        assert embedder.batches >= 1
        assert [await history.count_messages(f"s{i}") for i in range(3)] == [2, 2, 2]
    finally:
        await history.aclose()


@pytest.fixture(scope="module")
def own_chroma() -> Iterator[tuple[str, Any]]:
    """A Chroma server of this module's own on a free loopback port (it may be paused)."""
    pytest.importorskip("chromadb")
    from tests.conformance._harness_chroma import chroma_server

    with chroma_server() as (url, process):
        yield url, process


async def test_call_on_a_paused_chroma_server_times_out_naming_the_call(
    own_chroma: tuple[str, Any],
) -> None:
    """A call to a paused Chroma server gives `BackendTimeout` naming the call, also with a
    slow embedder; after the server resumes, the same provider works again."""
    from memweave.providers.chroma import ChromaChatHistoryProvider

    url, process = own_chroma
    history = ChromaChatHistoryProvider(
        url, embedder=_SlowEmbeddings(delay=0.1), timeout=1.0, namespace="mwr-paused"
    )
    try:
        await history.add_messages("s", make_messages(1))
        batch = make_messages(2)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(BackendTimeout) as raised:
                await history.add_messages("s", batch)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert (raised.value.operation, raised.value.timeout) == ("add_messages", 1.0)
        await history.add_messages("s", batch)  # maybe stored already: adding again is safe
        assert await history.count_messages("s") == 3
    finally:
        await history._run(lambda _: history._client.delete_collection(history.collection_name))
        await history.aclose()
