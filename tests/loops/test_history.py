"""History providers from any event loop: built from a URL they work in every loop; given a
client or engine they serve the loop that first used them and refuse elsewhere with
`EventLoopMismatch`, never a raw `RuntimeError` nor a hang."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from memweave import ChatMessage, EventLoopMismatch, MemweaveError, ProviderClosed
from memweave.providers import ChatHistoryProvider
from tests.conformance._harness import BackendHarness
from tests.loops.conftest import RUNS, in_thread_loop


def _ids(messages: list[ChatMessage]) -> list[str]:
    return [message.id for message in messages]


def _cleanup(history: ChatHistoryProvider, *session_ids: str) -> None:
    """Clear the sessions and close the provider, in a loop of its own."""

    async def close() -> None:
        try:
            for session_id in session_ids:
                await history.clear(session_id)
        finally:
            await history.aclose()

    asyncio.run(close())


@pytest.mark.usefixtures("no_unclosed_connections")
def test_consecutive_asyncio_runs_share_one_provider(
    harness: BackendHarness, session_id: str
) -> None:
    """One provider serves 50 consecutive `asyncio.run` calls: each appends and reads, and
    every message is stored once, in order; each loop's connections close with it."""
    history = harness.make()
    sent = [ChatMessage.user(f"turn {n}") for n in range(RUNS)]

    async def turn(n: int) -> list[str]:
        await history.add_messages(session_id, [sent[n]])
        return _ids(await history.list_messages(session_id))

    try:
        for n in range(RUNS):
            assert asyncio.run(turn(n)) == _ids(sent[: n + 1])
        assert asyncio.run(history.list_messages(session_id)) == sent
    finally:
        _cleanup(history, session_id)


@pytest.mark.usefixtures("no_unclosed_connections")
def test_a_thread_with_its_own_loop_shares_the_provider(
    harness: BackendHarness, new_session_id: Callable[[str], str]
) -> None:
    """A thread running its own loop uses the provider while the main loop does: each
    writer's messages are stored once, in its order, in its own session and a shared one."""
    history = harness.make()
    shared = new_session_id("-shared")
    own = {"main": new_session_id("-main"), "thread": new_session_id("-thread")}
    turns = 15
    start = threading.Barrier(2)
    sent = {
        name: [ChatMessage.user(f"{name} {n}") for n in range(turns)] for name in ("main", "thread")
    }

    async def writer(name: str) -> None:
        await asyncio.to_thread(start.wait, 30)
        for n, message in enumerate(sent[name]):
            await history.add_messages(own[name], [message])
            await history.add_messages(shared, [message])
            assert _ids(await history.list_messages(own[name])) == _ids(sent[name][: n + 1])

    async def main() -> None:
        await asyncio.gather(writer("main"), in_thread_loop(lambda: writer("thread"))())

    try:
        asyncio.run(main())
        assert asyncio.run(history.list_messages(own["main"])) == sent["main"]
        assert asyncio.run(history.list_messages(own["thread"])) == sent["thread"]
        stored = _ids(asyncio.run(history.list_messages(shared)))
        assert sorted(stored) == sorted(_ids(sent["main"] + sent["thread"]))
        for name in ("main", "thread"):
            mine = set(_ids(sent[name]))
            assert [i for i in stored if i in mine] == _ids(sent[name])
    finally:
        _cleanup(history, shared, *own.values())


@pytest.mark.usefixtures("no_unclosed_connections")
def test_aclose_also_closes_a_loop_running_in_another_thread(
    harness: BackendHarness, session_id: str
) -> None:
    """`aclose()` in one loop also releases what a loop running in another thread opened,
    there and without waiting for that loop to end; the thread's next call raises
    `ProviderClosed`."""
    history = harness.make()
    used, closed = threading.Event(), threading.Event()

    async def other() -> None:
        await history.add_messages(session_id, [ChatMessage.user("hi")])
        used.set()
        await asyncio.to_thread(closed.wait, 30)
        with pytest.raises(ProviderClosed):
            await history.count_messages(session_id)

    async def main() -> None:
        in_thread = asyncio.ensure_future(in_thread_loop(other)())
        await asyncio.to_thread(used.wait, 30)
        try:
            await history.clear(session_id)
        finally:
            await asyncio.wait_for(history.aclose(), 30)
            closed.set()
        await in_thread

    asyncio.run(main())


def test_a_loop_closed_without_shutdown_leaves_the_provider_working(
    harness: BackendHarness, session_id: str
) -> None:
    """A loop closed by hand, without shutting down its async generators, cannot close its
    connections any more; the provider drops them, without awaiting on that loop or raising
    in a finalizer, and serves the next loops."""
    history = harness.make()
    sent = [ChatMessage.user(f"turn {n}") for n in range(3)]
    with warnings.catch_warnings():
        # The dropped connections' sockets are closed when collected, with a warning each.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            for message in sent[:2]:
                loop = asyncio.new_event_loop()
                try:
                    loop.run_until_complete(history.add_messages(session_id, [message]))
                finally:
                    loop.close()
            asyncio.run(history.add_messages(session_id, [sent[2]]))
            assert asyncio.run(history.list_messages(session_id)) == sent
        finally:
            _cleanup(history, session_id)
        gc.collect()


# -- given a client or engine: bound to the loop that first used it ---------------------------


def _url_of(request: pytest.FixtureRequest, name: str) -> str:
    harness: BackendHarness = request.getfixturevalue(name)
    assert harness.url is not None
    return harness.url


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.xdist_group(name))
        for name in ("sqlite_harness", "postgres_harness", "mysql_harness")
    ]
)
def sql_url(request: pytest.FixtureRequest) -> str:
    """The URL of a SQL backend."""
    return _url_of(request, request.param)


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.xdist_group(name))
        for name in ("redis_harness", "redis_cluster_harness")
    ]
)
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis server or cluster."""
    return _url_of(request, request.param)


def _check_refused(history: ChatHistoryProvider, session_id: str, resource: str) -> None:
    """Every way to reach the provider from another loop raises the typed error."""
    for _ in range(3):  # and again: the refusal leaves nothing half done
        with pytest.raises(EventLoopMismatch) as caught:
            asyncio.run(history.list_messages(session_id))
        assert isinstance(caught.value, MemweaveError)
        assert caught.value.owner == type(history).__name__
        assert caught.value.resource == resource
        assert "from a URL" in str(caught.value)
        assert "memweave.sync" in str(caught.value)
    with pytest.raises(EventLoopMismatch):
        asyncio.run(history.add_messages(session_id, [ChatMessage.user("no")]))

    async def from_a_thread() -> None:
        await in_thread_loop(lambda: history.count_messages(session_id))()

    with pytest.raises(EventLoopMismatch):
        asyncio.run(from_a_thread())


def test_sql_provider_given_an_engine_refuses_another_loop(sql_url: str, session_id: str) -> None:
    """A provider given an engine serves the loop that first used it; another loop gets
    `EventLoopMismatch` before the engine is touched."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from memweave.providers.sql import SQLChatHistoryProvider

    engine = create_async_engine(sql_url)
    history = SQLChatHistoryProvider(client=engine)
    message = ChatMessage.user("hi")

    async def first() -> None:
        try:
            await history.add_messages(session_id, [message])
            assert await history.list_messages(session_id) == [message]
        finally:
            await engine.dispose()  # the caller's engine, closed by the caller

    asyncio.run(first())
    _check_refused(history, session_id, "the engine passed in")
    asyncio.run(history.aclose())  # from another loop too: nothing of the caller's to close
    cleaner = SQLChatHistoryProvider(sql_url)
    _cleanup(cleaner, session_id)


def test_sql_provider_on_in_memory_sqlite_refuses_another_loop(session_id: str) -> None:
    """An in-memory SQLite database is one connection: the loop that first used it keeps it,
    and another loop gets `EventLoopMismatch` naming it."""
    from memweave.providers.sql import SQLChatHistoryProvider

    history = SQLChatHistoryProvider("sqlite+aiosqlite://")
    asyncio.run(history.add_messages(session_id, [ChatMessage.user("hi")]))
    _check_refused(history, session_id, "its in-memory SQLite database")
    asyncio.run(history.aclose())


def test_redis_provider_given_a_client_refuses_another_loop(
    any_redis_url: str, session_id: str
) -> None:
    """A provider given a client serves the loop that first used it; another loop gets
    `EventLoopMismatch` before the client is touched."""
    from memweave.providers.redis import RedisChatHistoryProvider, client_from_url

    client = client_from_url(any_redis_url)
    history = RedisChatHistoryProvider(client=client)
    message = ChatMessage.user("hi")

    async def first() -> None:
        try:
            await history.add_messages(session_id, [message])
            assert await history.list_messages(session_id) == [message]
        finally:
            await client.aclose()  # the caller's client, closed by the caller

    asyncio.run(first())
    _check_refused(history, session_id, "the client passed in")
    asyncio.run(history.aclose())
    _cleanup(RedisChatHistoryProvider(any_redis_url), session_id)


async def _ping(client: Any) -> None:
    await client.ping()


def test_redis_provider_given_a_client_bound_elsewhere_raises_the_typed_error(
    redis_url: str, session_id: str
) -> None:
    """A client the caller used in a loop that has closed fails in the driver; the provider
    still raises `EventLoopMismatch`, not the driver's `RuntimeError`."""
    from memweave.providers.redis import RedisChatHistoryProvider, client_from_url

    client = client_from_url(redis_url)
    asyncio.run(_ping(client))  # the client's pooled connection now belongs to a closed loop
    history = RedisChatHistoryProvider(client=client)
    with pytest.raises(EventLoopMismatch, match="the client passed in"):
        asyncio.run(history.count_messages(session_id))
    asyncio.run(history.aclose())
    with warnings.catch_warnings():
        # The caller's connection of the closed loop: left to the collector, as asyncio does.
        warnings.simplefilter("ignore", ResourceWarning)
        del history, client
        gc.collect()


def test_chroma_provider_given_a_client_works_in_any_loop(
    chroma_server_url: str, session_id: str
) -> None:
    """Chroma's client is blocking and runs on the provider's worker thread, so a provider
    given one works in consecutive loops and in a thread's loop."""
    import chromadb

    from memweave.providers.chroma import ChromaChatHistoryProvider
    from tests.context.conftest import HashEmbeddings

    port = int(chroma_server_url.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    history = ChromaChatHistoryProvider(
        client=client, namespace=f"loops-{session_id[-10:]}", embedder=HashEmbeddings()
    )
    sent = [ChatMessage.user(f"turn {n}") for n in range(10)]
    try:
        for n, message in enumerate(sent):
            asyncio.run(history.add_messages(session_id, [message]))
            assert asyncio.run(history.list_messages(session_id)) == sent[: n + 1]

        async def from_a_thread() -> int:
            return await in_thread_loop(lambda: history.count_messages(session_id))()

        assert asyncio.run(from_a_thread()) == len(sent)
    finally:
        asyncio.run(history.aclose())
        client.delete_collection(history.collection_name)
