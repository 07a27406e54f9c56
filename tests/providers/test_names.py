"""One name per idea: `namespace` on every history backend and checkpoint store, `client` for
an injected SQL engine, `search(query, *, session_id, k)`; the old names as deprecated
aliases that keep naming exactly what they named."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memweave import ChatMessage
from memweave.errors import ConfigurationError, InvalidArgument
from memweave.orchestration._checkpoints_redis import RedisCheckpointStore
from memweave.orchestration._checkpoints_sql import SQLCheckpointStore, checkpoint_table
from memweave.orchestration.checkpoints import (
    Checkpoint,
    InMemoryCheckpointStore,
    thread_key,
)
from memweave.providers import InMemoryChatHistoryProvider, from_url
from memweave.providers._namespace import StoredNames
from memweave.providers.chroma import ChromaChatHistoryProvider
from memweave.providers.redis import RedisChatHistoryProvider
from memweave.providers.sql import SQLChatHistoryProvider, build_metadata
from tests.conformance._harness_chroma import chroma_server_url
from tests.conformance._harness_redis import redis_url
from tests.conformance._harness_sql import mysql_url, postgres_url
from tests.context.conftest import HashEmbeddings

__all__ = ["chroma_server_url", "mysql_url", "postgres_url", "redis_url"]

SQL_TABLES = ("messages", "sessions", "schema", "checkpoints")


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, valid on every backend."""
    return f"mwn{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each SQL database under test."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'names.db'}"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@contextlib.contextmanager
def no_deprecation() -> Iterator[None]:
    """Fail on any `DeprecationWarning` inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        yield


def checkpoint(session_id: str) -> Checkpoint:
    return Checkpoint(workflow="w", session_id=session_id, status="idle", current_agent="a")


async def redis_keys(url: str, pattern: str) -> list[str]:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    try:
        return sorted([key async for key in client.scan_iter(match=pattern, count=1000)])
    finally:
        await client.aclose()


async def delete_redis_keys(url: str, namespace: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


@pytest.fixture
async def drop_tables(sql_url: str) -> AsyncIterator[Callable[[str], None]]:
    """Register a table prefix whose tables (history and checkpoints) go after the test."""
    prefixes: list[str] = []
    yield prefixes.append
    engine = create_async_engine(sql_url)
    try:
        async with engine.begin() as conn:
            for prefix in prefixes:
                await conn.run_sync(build_metadata(namespace=prefix[:-1]).drop_all)
                await conn.run_sync(checkpoint_table(namespace=prefix[:-1]).drop, checkfirst=True)
    finally:
        await engine.dispose()


# -- Redis --------------------------------------------------------------------------------------


async def test_redis_namespace_starts_every_key(redis_url: str, namespace: str) -> None:
    """A Redis history and checkpoint store in a namespace write only keys `<namespace>:...`."""
    with no_deprecation():
        history = RedisChatHistoryProvider(redis_url, namespace=namespace)
        store = RedisCheckpointStore(redis_url, namespace=namespace)
    try:
        await history.add_messages("s", [ChatMessage.user("hi")])
        await store.save_checkpoint(checkpoint("s"))
        keys = await redis_keys(redis_url, f"{namespace}:*")
        assert any(key.endswith(":msgs") for key in keys)
        assert any(key.startswith(f"{namespace}:checkpoints:") for key in keys)
        assert history.namespace == store.namespace == namespace
    finally:
        await history.aclose()
        await store.aclose()
        await delete_redis_keys(redis_url, namespace)


async def test_redis_prefix_is_a_deprecated_namespace(redis_url: str, namespace: str) -> None:
    """`prefix=` warns at the caller's line and names the same keys as `namespace=`."""
    with pytest.warns(DeprecationWarning, match=r"prefix=") as caught:
        old = RedisChatHistoryProvider(redis_url, prefix=namespace)
    assert caught[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=r"prefix="):
        old_store = RedisCheckpointStore(redis_url, prefix=namespace)
    new = RedisChatHistoryProvider(redis_url, namespace=namespace)
    new_store = RedisCheckpointStore(redis_url, namespace=namespace)
    try:
        message = ChatMessage.user("hi")
        await old.add_messages("s", [message])
        await old_store.save_checkpoint(saved := checkpoint("s"))
        assert await new.list_messages("s") == [message]
        assert await new_store.get_checkpoint("w", "s") == saved
        assert old.namespace == old_store.namespace == namespace
        with pytest.warns(DeprecationWarning, match=r"\.namespace"):
            assert old.prefix == namespace
    finally:
        for closing in (old, new, old_store, new_store):
            await closing.aclose()
        await delete_redis_keys(redis_url, namespace)


async def test_redis_default_namespace_keeps_todays_keys(redis_url: str) -> None:
    """With no namespace, keys are `memweave:{<digest>}:...` and `memweave:checkpoints:...`."""
    session = f"mwn-{uuid.uuid4().hex}"
    history = RedisChatHistoryProvider(redis_url)
    store = RedisCheckpointStore(redis_url)
    try:
        await history.add_messages(session, [ChatMessage.user("hi")])
        await store.save_checkpoint(checkpoint(session))
        digest = hashlib.blake2b(session.encode(), digest_size=16).hexdigest()
        thread = thread_key("w", session)
        assert await redis_keys(redis_url, f"memweave:{{{digest}}}:msgs") != []
        assert await redis_keys(redis_url, f"memweave:checkpoints:{{{thread}}}:order") != []
        assert history.namespace == store.namespace == "memweave"
    finally:
        await history.clear(session)
        await store.delete_checkpoints("w", session)
        await history.aclose()
        await store.aclose()


# -- SQL ----------------------------------------------------------------------------------------


async def test_sql_namespace_names_the_tables(
    sql_url: str, namespace: str, drop_tables: Callable[[str], None]
) -> None:
    """`namespace="x"` names the tables `x_messages`, `x_sessions`, `x_schema`, `x_checkpoints`."""
    drop_tables(f"{namespace}_")
    with no_deprecation():
        history = SQLChatHistoryProvider(sql_url, namespace=namespace)
        store = SQLCheckpointStore(sql_url, namespace=namespace)
    try:
        await history.add_messages("s", [ChatMessage.user("hi")])
        await store.save_checkpoint(checkpoint("s"))
        found = await table_names(history.engine)
        assert {f"{namespace}_{table}" for table in SQL_TABLES} <= found
        assert history.namespace == store.namespace == namespace
    finally:
        await history.aclose()
        await store.aclose()


async def test_sql_table_prefix_is_a_deprecated_namespace(
    sql_url: str, namespace: str, drop_tables: Callable[[str], None]
) -> None:
    """`table_prefix="x_"` warns and names the tables `namespace="x"` names."""
    drop_tables(f"{namespace}_")
    with pytest.warns(DeprecationWarning, match="table_prefix=") as caught:
        old = SQLChatHistoryProvider(sql_url, table_prefix=f"{namespace}_")
    assert caught[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="table_prefix="):
        old_store = SQLCheckpointStore(sql_url, table_prefix=f"{namespace}_")
    new = SQLChatHistoryProvider(sql_url, namespace=namespace)
    new_store = SQLCheckpointStore(sql_url, namespace=namespace)
    try:
        message = ChatMessage.user("hi")
        await old.add_messages("s", [message])
        await old_store.save_checkpoint(saved := checkpoint("s"))
        assert await new.list_messages("s") == [message]
        assert await new_store.get_checkpoint("w", "s") == saved
        assert old.namespace == old_store.namespace == namespace
        assert old.table_prefix == new.table_prefix == f"{namespace}_"
    finally:
        for closing in (old, new, old_store, new_store):
            await closing.aclose()


def test_sql_table_prefix_keeps_its_exact_table_names() -> None:
    """An old prefix names exactly the tables it named before, with or without `_`."""
    with pytest.warns(DeprecationWarning, match="table_prefix="):
        bare = SQLChatHistoryProvider("sqlite+aiosqlite://", table_prefix="app")
    assert set(bare.metadata.tables) == {"appmessages", "appsessions", "appschema"}
    with pytest.warns(DeprecationWarning, match="table_prefix="):
        assert checkpoint_table("app").name == "appcheckpoints"
    with pytest.warns(DeprecationWarning, match="table_prefix="):
        old = build_metadata("app_")
    assert old is build_metadata(namespace="app")
    assert set(old.tables) == {"app_messages", "app_sessions", "app_schema"}
    with pytest.warns(DeprecationWarning, match="table_prefix="):
        assert checkpoint_table("app_").name == checkpoint_table(namespace="app").name


async def test_sql_default_namespace_keeps_todays_tables(tmp_path: Path) -> None:
    """With no namespace, the tables are `memweave_messages`, ... as before."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'default.db'}"
    async with SQLChatHistoryProvider(url) as history, SQLCheckpointStore(url) as store:
        await history.add_messages("s", [ChatMessage.user("hi")])
        await store.save_checkpoint(checkpoint("s"))
        assert await table_names(history.engine) == {f"memweave_{t}" for t in SQL_TABLES}
        assert history.namespace == store.namespace == "memweave"


async def test_sql_engine_is_a_deprecated_client(tmp_path: Path) -> None:
    """`engine=` warns and is used as `client=` is; the caller keeps it open."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    try:
        with pytest.warns(DeprecationWarning, match="engine=") as caught:
            old = SQLChatHistoryProvider(engine=engine)
        assert caught[0].filename == __file__
        with pytest.warns(DeprecationWarning, match="engine="):
            old_store = SQLCheckpointStore(engine=engine)
        with no_deprecation():
            new = SQLChatHistoryProvider(client=engine)
            new_store = SQLCheckpointStore(client=engine)
        await old.add_messages("s", [message := ChatMessage.user("hi")])
        await old_store.save_checkpoint(saved := checkpoint("s"))
        assert await new.list_messages("s") == [message]
        assert await new_store.get_checkpoint("w", "s") == saved
        assert old.engine is new.engine is engine
        for closing in (old, new, old_store, new_store):
            await closing.aclose()
    finally:
        await engine.dispose()


# -- Chroma -------------------------------------------------------------------------------------


async def test_chroma_namespace_names_the_collection(
    chroma_server_url: str, namespace: str
) -> None:
    """`namespace="x"` (or `?namespace=x`) stores in the collection `x_history`; `collection=`
    and `?collection=` warn and name a collection exactly, so `x_history` is the same one."""
    import chromadb

    with no_deprecation():
        new = ChromaChatHistoryProvider(
            chroma_server_url, namespace=namespace, embedder=HashEmbeddings()
        )
        in_url = ChromaChatHistoryProvider(
            f"{chroma_server_url}?namespace={namespace}", embedder=HashEmbeddings()
        )
    with pytest.warns(DeprecationWarning, match="collection=") as caught:
        old = ChromaChatHistoryProvider(
            chroma_server_url, collection=f"{namespace}_history", embedder=HashEmbeddings()
        )
    assert caught[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=r"\?collection="):
        old_url = ChromaChatHistoryProvider(
            f"{chroma_server_url}?collection={namespace}_history", embedder=HashEmbeddings()
        )
    client = chromadb.HttpClient(host="127.0.0.1", port=int(chroma_server_url.rsplit(":", 1)[1]))
    try:
        await old.add_messages("s", [message := ChatMessage.user("hi")])
        for provider in (new, in_url, old_url):
            assert await provider.list_messages("s") == [message]
            assert provider.namespace == namespace
            assert provider.collection_name == f"{namespace}_history"
        assert f"{namespace}_history" in {c.name for c in client.list_collections()}
    finally:
        for closing in (old, new, in_url, old_url):
            await closing.aclose()
        client.delete_collection(f"{namespace}_history")
        client.close()


async def test_chroma_default_namespace_keeps_todays_collection(tmp_path: Path) -> None:
    """With no namespace, the collection is `memweave_history`, as before."""
    import chromadb

    async with ChromaChatHistoryProvider(
        f"chroma://{tmp_path}", embedder=HashEmbeddings()
    ) as history:
        await history.add_messages("s", [ChatMessage.user("hi")])
        assert (history.namespace, history.collection_name) == ("memweave", "memweave_history")
    names = {c.name for c in chromadb.PersistentClient(str(tmp_path)).list_collections()}
    assert names == {"memweave_history"}


def test_chroma_collection_keeps_its_exact_name(tmp_path: Path) -> None:
    """An old collection name not ending in `_history` is still used exactly as given."""
    with pytest.warns(DeprecationWarning, match="collection="):
        history = ChromaChatHistoryProvider(f"chroma://{tmp_path}", collection="my_chats")
    assert (history.namespace, history.collection_name) == ("my_chats", "my_chats")


async def test_chroma_search_takes_the_query_first(tmp_path: Path) -> None:
    """`search(query, session_id=..., k=...)` as `VectorMemory.search`; the old positional
    order `search(session_id, query[, k])` warns at the caller and finds the same."""
    async with ChromaChatHistoryProvider(
        f"chroma://{tmp_path}", embedder=HashEmbeddings()
    ) as history:
        await history.add_messages(
            "s1", [ChatMessage.user("remember the milk"), ChatMessage.user("book a flight")]
        )
        await history.add_messages("s2", [ChatMessage.user("the milk again")])
        with no_deprecation():
            top = await history.search("milk", session_id="s1", k=1)
            both = await history.search("milk", session_id="s1")
        assert [hit.message.text for hit in top] == ["remember the milk"]
        with pytest.warns(DeprecationWarning, match="search") as caught:
            assert await history.search("s1", "milk", 1) == top  # type: ignore[call-overload]
        assert caught[0].filename == __file__
        with pytest.warns(DeprecationWarning, match="search"):
            assert await history.search("s1", "milk") == both  # type: ignore[call-overload]
        with pytest.raises(InvalidArgument, match="session_id"):
            await history.search("milk")  # type: ignore[call-overload]
        with pytest.raises(InvalidArgument, match="session_id"):
            await history.search("s1", "milk", session_id="s2")  # type: ignore[call-overload]


def test_sync_chroma_search_takes_the_query_first(tmp_path: Path) -> None:
    """The blocking face's `search` has the same order, and the same deprecated old one."""
    from memweave import sync

    with sync.ChromaChatHistoryProvider(
        f"chroma://{tmp_path}", namespace="chats", embedder=HashEmbeddings()
    ) as history:
        history.add_messages("s1", [ChatMessage.user("remember the milk")])
        hits = history.search("milk", session_id="s1", k=1)
        assert [hit.message.text for hit in hits] == ["remember the milk"]
        with pytest.warns(DeprecationWarning, match="search") as caught:
            assert history.search("s1", "milk", 1) == hits  # type: ignore[call-overload]
        assert caught[0].filename == __file__
        assert history.namespace == "chats"


# -- errors -------------------------------------------------------------------------------------


def _engine() -> AsyncEngine:
    return create_async_engine("sqlite+aiosqlite://")


BOTH_NAMES: list[Callable[[Path], object]] = [
    lambda _: RedisChatHistoryProvider(namespace="a", prefix="a"),
    lambda _: RedisCheckpointStore(namespace="a", prefix="a"),
    lambda _: SQLChatHistoryProvider("sqlite+aiosqlite://", namespace="a", table_prefix="a_"),
    lambda _: SQLCheckpointStore("sqlite+aiosqlite://", namespace="a", table_prefix="a_"),
    lambda _: SQLChatHistoryProvider(client=(e := _engine()), engine=e),
    lambda _: SQLCheckpointStore(client=(e := _engine()), engine=e),
    lambda path: ChromaChatHistoryProvider(
        f"chroma://{path}", namespace="a", collection="a_history"
    ),
    lambda _: build_metadata("a_", namespace="a"),
    lambda _: checkpoint_table("a_", namespace="a"),
]


@pytest.mark.parametrize("build", BOTH_NAMES)
def test_a_name_and_its_deprecated_name_together_raise(
    build: Callable[[Path], object], tmp_path: Path
) -> None:
    """Passing an option under both names is a `ConfigurationError`, even with equal values."""
    with pytest.raises(ConfigurationError, match="deprecated name"):
        build(tmp_path)


def test_chroma_url_and_option_must_agree(tmp_path: Path) -> None:
    """The URL may name the namespace once, and an option may not contradict it."""
    with pytest.raises(ConfigurationError, match=r"\?namespace="):
        ChromaChatHistoryProvider(f"chroma://{tmp_path}?namespace=a&collection=b")
    with pytest.raises(ConfigurationError, match="given twice"):
        ChromaChatHistoryProvider(f"chroma://{tmp_path}?namespace=a", namespace="b")
    with no_deprecation():
        same = ChromaChatHistoryProvider(f"chroma://{tmp_path}?namespace=a", namespace="a")
    assert same.collection_name == "a_history"


BAD_NAMESPACES: list[tuple[Callable[[Any], object], object]] = [
    (lambda ns: RedisChatHistoryProvider(namespace=ns), "has space"),
    (lambda ns: RedisCheckpointStore(namespace=ns), "a{b}"),
    (lambda ns: RedisChatHistoryProvider(namespace=ns), ""),
    (lambda ns: SQLChatHistoryProvider("sqlite+aiosqlite://", namespace=ns), "bad-name"),
    (lambda ns: SQLChatHistoryProvider("sqlite+aiosqlite://", namespace=ns), "1abc"),
    (lambda ns: SQLCheckpointStore("sqlite+aiosqlite://", namespace=ns), "x" * 32),
    (lambda ns: ChromaChatHistoryProvider("chroma:///tmp/unused", namespace=ns), "-x"),
    (lambda ns: ChromaChatHistoryProvider("chroma:///tmp/unused", namespace=ns), "a/b"),
    (lambda ns: InMemoryChatHistoryProvider(namespace=ns), ""),
    (lambda ns: InMemoryCheckpointStore(namespace=ns), 7),
]


@pytest.mark.parametrize(("build", "bad"), BAD_NAMESPACES)
def test_a_bad_namespace_is_named_in_the_error(build: Callable[[Any], object], bad: object) -> None:
    """An invalid namespace is a `ConfigurationError` naming the option and the value."""
    with pytest.raises(ConfigurationError, match=f"namespace must be .*{re.escape(repr(bad))}"):
        build(bad)


def test_a_bad_deprecated_name_is_named_in_the_error() -> None:
    """A bad value passed under an old name is reported under that name."""
    old_name = pytest.warns(DeprecationWarning, match="is deprecated")
    with old_name, pytest.raises(ConfigurationError, match="prefix must"):
        RedisChatHistoryProvider(prefix="a b")
    old_name = pytest.warns(DeprecationWarning, match="is deprecated")
    with old_name, pytest.raises(ConfigurationError, match="table_prefix"):
        SQLChatHistoryProvider("sqlite+aiosqlite://", table_prefix="bad-name")


async def test_from_url_takes_namespace_on_every_scheme(tmp_path: Path) -> None:
    """`from_url(url, namespace=...)` works on every backend; a typo lists `namespace`, never
    an old name."""
    urls = [
        "memory://",
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "redis://127.0.0.1:6379/0",
        f"chroma://{tmp_path / 'chroma'}",
    ]
    for url in urls:
        with no_deprecation():
            history = from_url(url, namespace="app")
        assert getattr(history, "namespace", None) == "app"
        await history.aclose()
    with pytest.raises(ConfigurationError, match="namespace") as raised:
        from_url("redis://127.0.0.1:6379/0", namespce="app")
    assert "prefix" not in str(raised.value)


def test_stored_names_apply_each_backend_rule_only_when_asked() -> None:
    """A multi-backend store's namespace meets a backend's rule only once that backend is
    asked for: `app:v1` names Redis keys but no SQL table."""
    names = StoredNames("Store", "app:v1")
    assert names.redis_prefix() == "app:v1"
    with pytest.raises(ConfigurationError, match=r"Store: namespace must be .*'app:v1'"):
        names.sql_prefix()
    with pytest.raises(ConfigurationError, match="namespace must be a non-empty str"):
        StoredNames("Store", "")


def test_stored_names_chroma_namespace_fits_the_role() -> None:
    """`<namespace>_<role>` may use all of Chroma's 512 characters, so a shorter role leaves
    a longer namespace; deprecated names are used as given."""
    longest = "n" * (512 - len("_store"))
    assert StoredNames("Store", longest).chroma_collection("store") == f"{longest}_store"
    with pytest.raises(ConfigurationError, match="1-506 characters"):
        StoredNames("Store", longest + "n").chroma_collection("store")
    with pytest.raises(ConfigurationError, match="1-504 characters"):
        StoredNames("Store", longest).chroma_collection("history")
    old = StoredNames("Store", prefix="p", table_prefix="t_", collection="c_store")
    assert (old.redis_prefix(), old.sql_prefix(), old.chroma_collection("store")) == (
        "p",
        "t_",
        "c_store",
    )
