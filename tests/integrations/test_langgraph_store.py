"""`MemweaveStore`, LangGraph's `BaseStore` on memweave: the same clauses on SQLite, PostgreSQL,
MariaDB and Redis, plus a LangGraph graph that uses it.

Every test writes under a fresh root label and deletes what it wrote at teardown; the servers
are shared, so nothing else is touched.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langgraph.store.base import InvalidNamespaceError

from memweave.errors import BackendUnavailable, InvalidArgument, SyncCallInEventLoop
from memweave.integrations.langgraph._store import InvalidNamespace, MemweaveStore
from memweave.integrations.langgraph._store_backend import namespace_path, path_range
from tests.conftest import service_unavailable
from tests.integrations._support import HashedWordEmbeddings

URLS = {
    "postgres": os.environ.get(
        "MEMWEAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("MEMWEAVE_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("MEMWEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
HOSTILE = [
    ":",
    "|",
    "{x}",
    "%",
    "_",
    "a:b",
    "a|b",
    "{a}",
    "a%",
    "a_",
    "A",
    "a",
    "é",
    "e\u0301",
    "*",
]
"""Labels that must stay apart: separators, glob and LIKE characters, case and unicode forms."""

StoreFactory = Callable[..., MemweaveStore]


async def _reachable(store: MemweaveStore, what: str) -> None:
    try:
        await asyncio.wait_for(store.aget(("mwt-ping",), "ping"), timeout=15)
    except (BackendUnavailable, TimeoutError) as exc:
        await store.aclose()
        service_unavailable(what, f"{type(exc).__name__}: {exc}")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.xdist_group("postgres")),
        pytest.param("mysql", marks=pytest.mark.xdist_group("mysql")),
        pytest.param("redis", marks=pytest.mark.xdist_group("redis")),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of one backend: a SQLite file of the test, or a shared server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return URLS[str(request.param)]


@pytest.fixture
def root() -> str:
    """A root label no other test, run or worker uses."""
    return f"mwt-store-{uuid.uuid4().hex}"


@pytest.fixture
async def make_store(url: str, root: str) -> AsyncIterator[StoreFactory]:
    """Builds stores on the backend; at teardown deletes every item under `root` (expired
    ones by a sweep) and closes them."""
    probe = MemweaveStore.from_url(url)
    await _reachable(probe, url)
    stores = [probe]

    def make(**options: Any) -> MemweaveStore:
        store = MemweaveStore.from_url(url, **options)
        stores.append(store)
        return store

    yield make
    await probe.sweep_ttl()  # the test's expired items (and only expired ones, anyone's)
    while found := await probe.asearch((root,), limit=500, refresh_ttl=False):
        for item in found:
            await probe.adelete(item.namespace, item.key)
    for store in stores:
        await store.aclose()


@pytest.fixture
def store(make_store: StoreFactory) -> MemweaveStore:
    """A store without an embedder (lexical search only)."""
    return make_store()


async def test_put_then_get_returns_the_value(store: MemweaveStore, root: str) -> None:
    """An item put is read back equal, with its namespace and key."""
    value = {"text": "likes tea", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None}
    await store.aput((root, "u1"), "prefs", value)
    item = await store.aget((root, "u1"), "prefs")
    assert item is not None
    assert (item.namespace, item.key, item.value) == ((root, "u1"), "prefs", value)


async def test_put_again_keeps_created_at_and_replaces_the_value(
    store: MemweaveStore, root: str
) -> None:
    """A second put of an item replaces its value whole and keeps its creation time."""
    await store.aput((root,), "k", {"a": 1, "b": 2})
    first = await store.aget((root,), "k")
    await store.aput((root,), "k", {"a": 3})
    second = await store.aget((root,), "k")
    assert first is not None
    assert second is not None
    assert second.value == {"a": 3}
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at


async def test_delete_removes_the_item(store: MemweaveStore, root: str) -> None:
    """A delete (a put of None) removes the item from gets and searches."""
    await store.aput((root,), "k", {"text": "gone soon"})
    await store.adelete((root,), "k")
    assert await store.aget((root,), "k") is None
    assert await store.asearch((root,), query="gone soon") == []


async def test_get_keeps_hostile_namespaces_apart(store: MemweaveStore, root: str) -> None:
    """Labels differing only in separators, wildcards, case or unicode form never share items."""
    for label in HOSTILE:
        await store.aput((root, label), "same-key", {"label": label})
    for label in HOSTILE:
        item = await store.aget((root, label), "same-key")
        assert item is not None
        assert item.value == {"label": label}
        assert item.namespace == (root, label)


async def test_search_never_crosses_namespaces(store: MemweaveStore, root: str) -> None:
    """A search under one prefix returns only items under that prefix, whatever matches."""
    for label in HOSTILE:
        await store.aput((root, label, "deep"), "k", {"text": f"shared words {label}"})
    for label in HOSTILE:
        for query in (None, "shared words"):
            found = await store.asearch((root, label), query=query, limit=100)
            assert [item.namespace for item in found] == [(root, label, "deep")]


async def test_search_filters_on_values_and_operators(store: MemweaveStore, root: str) -> None:
    """`filter` keeps the items whose fields equal the values or meet every operator."""
    for n in range(6):
        await store.aput((root,), f"k{n}", {"n": n, "kind": "even" if n % 2 == 0 else "odd"})
    found = await store.asearch((root,), filter={"kind": "even", "n": {"$gt": 0, "$lte": 4}})
    assert sorted(item.key for item in found) == ["k2", "k4"]
    found = await store.asearch((root,), filter={"n": {"$ne": 3}}, limit=100)
    assert sorted(item.key for item in found) == ["k0", "k1", "k2", "k4", "k5"]


async def test_search_pages_newest_first_with_limit_and_offset(
    store: MemweaveStore, root: str
) -> None:
    """Without a query, items come most recently updated first, paged by limit and offset."""
    for n in range(5):
        await store.aput((root,), f"k{n}", {"n": n})
    await asyncio.sleep(0.01)  # past the clock's resolution (SQLite's is 1 ms)
    await store.aput((root,), "k0", {"n": 10})  # now the newest
    keys = [item.key for item in await store.asearch((root,), limit=100)]
    assert keys[0] == "k0"
    assert sorted(keys) == ["k0", "k1", "k2", "k3", "k4"]
    pages = [await store.asearch((root,), limit=2, offset=at) for at in (0, 2, 4)]
    assert [item.key for page in pages for item in page] == keys


async def test_search_query_ranks_the_best_match_first(make_store: StoreFactory, root: str) -> None:
    """A query scores every candidate in [0, 1], best first; an exact text scores 1."""
    store = make_store(index={"fields": ["text"]})
    await store.aput((root,), "tea", {"text": "Ada drinks green tea every morning"})
    await store.aput((root,), "seat", {"text": "Ada prefers window seats on long trains"})
    await store.aput((root,), "same", {"text": "window seats"})
    await store.aput((root,), "plain", {"text": "nothing related"}, index=False)
    found = await store.asearch((root,), query="Window  SEATS", limit=10)
    assert [item.key for item in found] == ["same", "seat", "tea", "plain"]
    assert found[0].score == 1.0
    assert all(0.0 <= (item.score or 0.0) <= 1.0 for item in found[:3])
    assert found[1].score is not None
    assert found[2].score is not None
    assert found[1].score > found[2].score
    assert found[3].score is None


async def test_search_query_fuses_dense_vectors_when_an_embedder_is_set(
    make_store: StoreFactory, root: str
) -> None:
    """With an embedder, scores fuse dense similarity with BM25 and stay in [0, 1]."""
    store = make_store(index={"dims": 64, "embed": HashedWordEmbeddings(), "fields": ["text"]})
    await store.aput((root,), "seat", {"text": "Ada prefers window seats", "n": 1})
    await store.aput((root,), "tea", {"text": "green tea", "n": 2})
    found = await store.asearch((root,), query="which seats does Ada prefer")
    assert [item.key for item in found] == ["seat", "tea"]
    lexical_only = make_store()
    plain = await lexical_only.asearch((root,), query="which seats does Ada prefer")
    assert found[0].score is not None
    assert plain[0].score is not None
    assert 0.0 < found[0].score <= 1.0
    assert found[0].score != plain[0].score


async def test_search_embeds_vectors_a_new_vector_store_lacks(
    make_store: StoreFactory, root: str
) -> None:
    """Items put through a store without vectors still get dense scores in one with vectors."""
    await make_store().aput((root,), "seat", {"text": "window seats"})
    store = make_store(index={"dims": 64, "embed": HashedWordEmbeddings(), "fields": ["text"]})
    [found] = await store.asearch((root,), query="window seats please")
    lexical = make_store()
    [plain] = await lexical.asearch((root,), query="window seats please")
    assert found.score is not None
    assert plain.score is not None
    assert found.score != plain.score


async def test_list_namespaces_matches_prefix_suffix_and_depth(
    store: MemweaveStore, root: str
) -> None:
    """`list_namespaces` filters by prefix and suffix (with `*`), truncates and pages, sorted."""
    for path in [("a", "x", "v1"), ("a", "y", "v1"), ("a", "y", "v2"), ("b", "x", "v1")]:
        await store.aput((root, *path), "k", {"n": 1})
    assert await store.alist_namespaces(prefix=(root, "a")) == [
        (root, "a", "x", "v1"),
        (root, "a", "y", "v1"),
        (root, "a", "y", "v2"),
    ]
    assert await store.alist_namespaces(prefix=(root, "*", "x"), suffix=("v1",)) == [
        (root, "a", "x", "v1"),
        (root, "b", "x", "v1"),
    ]
    assert await store.alist_namespaces(prefix=(root,), max_depth=2) == [(root, "a"), (root, "b")]
    assert await store.alist_namespaces(prefix=(root,), limit=2, offset=1) == [
        (root, "a", "y", "v1"),
        (root, "a", "y", "v2"),
    ]


async def test_ttl_expired_item_is_never_returned(store: MemweaveStore, root: str) -> None:
    """An item past its TTL is left out of gets, searches and namespace lists."""
    await store.aput((root, "short"), "k", {"text": "brief"}, ttl=0.5 / 60)
    await store.aput((root, "long"), "k", {"text": "brief"})
    await asyncio.sleep(1.0)
    assert await store.aget((root, "short"), "k") is None
    assert [item.namespace for item in await store.asearch((root,), query="brief")] == [
        (root, "long")
    ]
    assert await store.alist_namespaces(prefix=(root,)) == [(root, "long")]


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_ttl_refreshing_read_restarts_the_clock(store: MemweaveStore, root: str) -> None:
    """A read with `refresh_ttl` restarts the item's TTL; one without leaves it running."""
    await store.aput((root,), "k", {"n": 1}, ttl=1.5 / 60)
    await asyncio.sleep(0.9)
    assert await store.aget((root,), "k", refresh_ttl=True) is not None
    await asyncio.sleep(0.9)  # 1.8 s after the put, 0.9 s after the refresh
    assert await store.aget((root,), "k", refresh_ttl=False) is not None
    await asyncio.sleep(1.0)
    assert await store.aget((root,), "k", refresh_ttl=False) is None


async def test_sweep_ttl_removes_expired_items(make_store: StoreFactory, root: str) -> None:
    """`sweep_ttl` deletes expired items and reports them; live items stay."""
    store = make_store(ttl={"default_ttl": 0.3 / 60})
    await store.aput((root,), "short", {"n": 1})
    await store.aput((root,), "kept", {"n": 2}, ttl=None)
    await asyncio.sleep(0.6)
    assert await store.sweep_ttl() >= 1
    assert [item.key for item in await store.asearch((root,))] == ["kept"]


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
async def test_ttl_sweeper_deletes_expired_items_in_the_background(
    url: str, root: str, make_store: StoreFactory
) -> None:
    """With `sweep_interval_minutes`, `async with` starts a sweeper that deletes what expired."""
    ttl: Any = {"default_ttl": 0.2 / 60, "sweep_interval_minutes": 0.5 / 60}
    async with MemweaveStore.from_url(url, ttl=ttl) as store:
        await store.aput((root,), "short", {"n": 1})
        await asyncio.sleep(1.5)
        assert await store.sweep_ttl() == 0  # the sweeper got there first
        assert await store.stop_ttl_sweeper(timeout=5) is True


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "value",
    [{"when": object()}, {"n": float("nan")}, {1: "int key"}, {"t": (1, 2)}, ["not", "a", "dict"]],
)
async def test_put_rejects_values_that_are_not_json(
    store: MemweaveStore, root: str, value: Any
) -> None:
    """A value that is not a JSON object is refused with `InvalidArgument`; nothing is stored."""
    with pytest.raises(InvalidArgument):
        await store.aput((root,), "k", value)
    assert await store.aget((root,), "k") is None


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("namespace", [(), ("a.b",), ("",), ("langgraph", "x"), ("a\x00",)])
async def test_put_rejects_invalid_namespaces(store: MemweaveStore, namespace: Any) -> None:
    """A namespace breaking LangGraph's rules raises `InvalidNamespace`, a LangGraph error too."""
    from langgraph.store.base import PutOp

    with pytest.raises(InvalidNamespace) as raised:
        await store.abatch([PutOp(namespace, "k", {"n": 1})])
    assert isinstance(raised.value, InvalidNamespaceError)


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
async def test_search_skips_a_corrupt_item_and_get_reports_it(
    store: MemweaveStore, root: str
) -> None:
    """A corrupt stored item is named by `get` and skipped by searches; others stay readable."""
    from sqlalchemy import update

    from memweave.errors import CorruptRecord
    from memweave.integrations.langgraph._store_backend import item_id
    from memweave.integrations.langgraph._store_sql import SQLStoreBackend, store_table

    await store.aput((root,), "bad", {"n": 1})
    await store.aput((root,), "good", {"n": 2})
    backend = store._backend
    assert isinstance(backend, SQLStoreBackend)
    table = store_table()
    async with backend.engine.begin() as conn:
        bad = table.c.id == item_id((root,), "bad")
        await conn.execute(update(table).where(bad).values(data=b"{oops"))
    with pytest.raises(CorruptRecord):
        await store.aget((root,), "bad")
    assert [item.key for item in await store.asearch((root,))] == ["good"]
    async with backend.engine.begin() as conn:
        await conn.execute(update(table).where(bad).values(data=b"{}"))


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_blocking_methods_work_outside_an_event_loop(store: MemweaveStore, root: str) -> None:
    """The blocking face works from a thread without a loop and refuses inside a loop."""
    outcome: dict[str, Any] = {}

    def blocking() -> None:
        store.put((root,), "k", {"text": "from a thread"})
        outcome["item"] = store.get((root,), "k")
        outcome["found"] = store.search((root,), query="thread")

    thread = threading.Thread(target=blocking)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert outcome["item"].value == {"text": "from a thread"}
    assert [item.key for item in outcome["found"]] == ["k"]
    with pytest.raises(SyncCallInEventLoop):
        store.get((root,), "k")


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_store_on_a_caller_engine_or_client_leaves_it_open(
    store: MemweaveStore, url: str, root: str
) -> None:
    """A store built on the caller's engine or client works and leaves it open when closed."""
    if url.startswith("redis"):
        from redis.asyncio import Redis

        client: Any = Redis.from_url(url)
        given = MemweaveStore(client=client)
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        client = create_async_engine(url)
        given = MemweaveStore(client=client)
    await given.aput((root,), "k", {"n": 1})
    await given.aclose()
    assert (await store.aget((root,), "k")) is not None
    if url.startswith("redis"):
        assert await client.ping()
        await client.aclose()
    else:
        async with client.connect() as conn:
            assert conn is not None
        await client.dispose()


async def test_store_namespace_names_its_table_and_collection(tmp_path: Path) -> None:
    """`namespace=N` stores items in the table `N_store_items` and vectors in the Chroma
    collection `N_store`; the deprecated `table_prefix=` and `collection=` warn and name the
    same ones as given."""
    import chromadb
    from sqlalchemy import inspect
    from sqlalchemy.ext.asyncio import create_async_engine

    url = f"sqlite+aiosqlite:///{tmp_path / 'named.db'}"
    chroma = chromadb.PersistentClient(str(tmp_path / "vectors"))
    index: Any = {"dims": 64, "embed": HashedWordEmbeddings(), "fields": ["text"]}
    async with MemweaveStore(url, namespace="app", index=index, chroma_client=chroma) as store:
        await store.aput(("users",), "seat", {"text": "window seats"})
        assert [i.key for i in await store.asearch(("users",), query="seats")] == ["seat"]
    with pytest.warns(DeprecationWarning, match="deprecated") as caught:
        old = MemweaveStore(
            url, table_prefix="app_", collection="app_store", index=index, chroma_client=chroma
        )
    assert sorted(str(w.message).split("=")[0] for w in caught) == [
        "MemweaveStore(collection",
        "MemweaveStore(table_prefix",
    ]
    async with old:
        assert (await old.aget(("users",), "seat")) is not None
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert tables == ["app_store_items"]
    assert [c.name for c in chroma.list_collections()] == ["app_store"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": "a b"}, "namespace"),
        ({"namespace": "a", "table_prefix": "a_"}, "namespace= only"),
        ({"client": object()}, "one of url and client"),
    ],
)
def test_store_rejects_bad_names(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    """A namespace the backend cannot use, a new option given with its deprecated name, or a
    URL and a client, raise `ConfigurationError` saying which."""
    from memweave.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        MemweaveStore(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **options)


class _State(TypedDict):
    user: str
    question: str
    answer: str


@pytest.mark.parametrize("url", ["sqlite", "redis"], indirect=True)
async def test_graph_nodes_read_and_write_the_store(store: MemweaveStore, root: str) -> None:
    """A LangGraph graph compiled with `store=` remembers across runs through the store."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore

    async def remember(state: _State, *, store: BaseStore) -> dict[str, str]:
        namespace = (root, "memories", state["user"])
        hits = await store.asearch(namespace, query=state["question"], limit=1)
        if hits:
            return {"answer": f"you told me: {hits[0].value['text']}"}
        await store.aput(namespace, uuid.uuid4().hex, {"text": state["question"]})
        return {"answer": "noted"}

    builder = StateGraph(_State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    graph = builder.compile(store=store)
    first = await graph.ainvoke({"user": "ada", "question": "I like window seats", "answer": ""})
    second = await graph.ainvoke({"user": "ada", "question": "which seats?", "answer": ""})
    other = await graph.ainvoke({"user": "bob", "question": "which seats?", "answer": ""})
    assert first["answer"] == "noted"
    assert second["answer"] == "you told me: I like window seats"
    assert other["answer"] == "noted"


labels = st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=3)


@given(prefix=labels, namespace=labels)
def test_path_range_holds_exactly_the_namespaces_under_a_prefix(
    prefix: list[str], namespace: list[str]
) -> None:
    """A namespace's path lies in a prefix's range exactly when the prefix is its prefix."""
    bounds = path_range(prefix)
    path = namespace_path(namespace)
    inside = bounds is None or bounds[0] <= path < bounds[1]
    member = path + "|" + "0" * 32  # a Redis index member of an item in that namespace
    inside_member = bounds is None or bounds[0] <= member < bounds[1]
    under = namespace[: len(prefix)] == prefix
    assert inside_member == under
    assert inside == under
