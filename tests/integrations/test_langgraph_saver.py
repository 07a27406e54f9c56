"""`MemweaveCheckpointSaver` on every backend: LangGraph's own conformance suite, and the
clauses it lacks (two writer processes, hostile ids, corrupt records, a real graph)."""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from memweave.errors import CorruptRecord
from memweave.integrations.langgraph import (
    CorruptCheckpoint,
    MemweaveCheckpointSaver,
    safe_serializer,
)
from tests._redis_cluster import redis_cluster_url
from tests.conformance._harness_redis import redis_url
from tests.conformance._harness_sql import mysql_url, postgres_url
from tests.integrations._langgraph_saver_harness import (
    SaverBackend,
    Writers,
    checkpoint,
    config,
)

__all__ = ["mysql_url", "postgres_url", "redis_cluster_url", "redis_url"]

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.xdist_group("postgres")),
    pytest.param("mariadb", marks=pytest.mark.xdist_group("mysql")),
    pytest.param("redis", marks=pytest.mark.xdist_group("redis")),
    pytest.param("redis_cluster", marks=pytest.mark.xdist_group("redis_cluster")),
]

HOSTILE = ["a:b", "a|b", "{a}", "a}{", "%", "_", "a%_", "*", "A", "a", "a ", "ä", "a\nb", "''"]
"""Thread ids and namespaces that must all stay apart (`""` is the root namespace)."""


@pytest.fixture(params=BACKENDS)
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict[str, Any]]:
    """Name, URL and fresh options (a namespace) of the backend under test; the
    server URL fixtures skip when their server is unreachable."""
    name: str = request.param
    tag = uuid.uuid4().hex[:10]
    if name == "sqlite":
        return name, f"sqlite+aiosqlite:///{tmp_path / 'lg.db'}", {}
    if name in ("postgres", "mariadb"):
        url = request.getfixturevalue("postgres_url" if name == "postgres" else "mysql_url")
    else:
        url = request.getfixturevalue("redis_url" if name == "redis" else "redis_cluster_url")
    return name, url, {"namespace": f"mwt_lg_{tag}"}


@pytest.fixture
async def backend(backend_spec: tuple[str, str, dict[str, Any]]) -> AsyncIterator[SaverBackend]:
    """A saver backend; deletes what the test stored (its tables or keys) afterwards."""
    made = SaverBackend(*backend_spec)
    try:
        yield made
    finally:
        await made.cleanup()


async def _put(
    saver: MemweaveCheckpointSaver,
    thread_id: str,
    values: dict[str, Any],
    *,
    ns: str = "",
    parent: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    cp = checkpoint(values)
    stored = await saver.aput(
        config(thread_id, ns, parent),
        cp,
        metadata or {"source": "loop", "step": 0, "parents": {}},
        dict.fromkeys(values, "1"),
    )
    return str(stored["configurable"]["checkpoint_id"])


def _sqlite(folder: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{folder / name}.db"


# -- LangGraph's conformance suite --------------------------------------------------------------


async def test_conformance_passes_every_capability(backend: SaverBackend) -> None:
    """LangGraph's conformance suite passes every base and extended capability."""
    from langgraph.checkpoint.conformance import checkpointer_test, validate
    from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

    @checkpointer_test(name=f"MemweaveCheckpointSaver ({backend.name})")
    async def factory() -> AsyncIterator[MemweaveCheckpointSaver]:
        yield backend.make()

    report = await validate(factory)
    report.print_report()
    assert {name for name, result in report.results.items() if result.passed} == {
        capability.value for capability in ALL_CAPABILITIES
    }, report.to_dict()
    assert report.passed_all()


# -- two writer processes -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def writers() -> Iterator[Writers]:
    """Two writer processes, started once per test process (their start is the slow part)."""
    made = Writers()
    yield made
    made.stop()


async def test_put_from_two_processes_loses_nothing(
    backend: SaverBackend, writers: Writers, tmp_path: Path
) -> None:
    """Two processes putting checkpoints and writes on one thread at once lose nothing."""
    thread_id, count = f"two-writers-{uuid.uuid4().hex}", 15
    await writers.run(backend, thread_id, count, tmp_path)
    saver = backend.make()
    listed = [tup async for tup in saver.alist(config(thread_id))]
    steps = sorted((t.metadata["writer"], t.metadata["step"]) for t in listed)
    assert steps == sorted((tag, step) for tag in ("p", "q") for step in range(count))
    for tup in listed:
        writer, step = tup.metadata["writer"], tup.metadata["step"]
        assert tup.checkpoint["channel_values"]["log"] == [writer, step]
        assert sorted(w[1:] for w in tup.pending_writes or []) == [
            ("__error__", "boom"),
            ("log", f"{writer}-{step}"),
        ]
    latest = await saver.aget_tuple(config(thread_id))
    assert latest is not None
    assert latest.checkpoint["id"] == max(t.checkpoint["id"] for t in listed)


# -- isolation, corruption, lifecycle -----------------------------------------------------------


async def test_put_keeps_hostile_thread_ids_apart(backend: SaverBackend) -> None:
    """Thread ids differing only in `:`, `|`, braces, `%`, `_` or case are separate threads."""
    saver = backend.make()
    run = uuid.uuid4().hex[:8]
    threads = [f"{run}{name}" for name in HOSTILE]
    for thread_id in threads:
        await _put(saver, thread_id, {"owner": [thread_id]})
    for thread_id in threads:
        tup = await saver.aget_tuple(config(thread_id))
        assert tup is not None
        assert tup.checkpoint["channel_values"]["owner"] == [thread_id]
        assert len([t async for t in saver.alist(config(thread_id))]) == 1
    await saver.adelete_thread(threads[0])
    assert await saver.aget_tuple(config(threads[0])) is None
    assert all([await saver.aget_tuple(config(t)) is not None for t in threads[1:]])


async def test_put_keeps_hostile_namespaces_apart(backend: SaverBackend) -> None:
    """Namespaces differing only in `:`, `|`, braces, `%`, `_` or case never mix."""
    saver = backend.make()
    thread_id = f"namespaces-{uuid.uuid4().hex}"
    for ns in ["", *HOSTILE]:
        await _put(saver, thread_id, {"owner": [ns]}, ns=ns)
    for ns in ["", *HOSTILE]:
        listed = [t async for t in saver.alist(config(thread_id, ns))]
        assert [t.checkpoint["channel_values"]["owner"] for t in listed] == [[ns]]
        assert listed[0].config["configurable"]["checkpoint_ns"] == ns
    everything = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})]
    assert len(everything) == len(HOSTILE) + 1


async def test_get_tuple_reports_corrupt_checkpoint(backend: SaverBackend) -> None:
    """A corrupt stored checkpoint raises `CorruptCheckpoint` naming its thread and id."""
    saver = backend.make()
    thread_id = f"corrupt-{uuid.uuid4().hex}"
    first = await _put(saver, thread_id, {"n": [1]})
    second = await _put(saver, thread_id, {"n": [2]}, parent=first)
    await backend.corrupt(thread_id, "", second, b"\xff not json")
    with pytest.raises(CorruptCheckpoint) as caught:
        await saver.aget_tuple(config(thread_id))
    assert (caught.value.thread_id, caught.value.checkpoint_id) == (thread_id, second)
    assert isinstance(caught.value, CorruptRecord)
    assert thread_id in str(caught.value)
    assert second in str(caught.value)
    older = await saver.aget_tuple(config(thread_id, "", first))
    assert older is not None
    assert older.checkpoint["channel_values"]["n"] == [1]


async def test_prune_deletes_values_no_checkpoint_uses(backend: SaverBackend) -> None:
    """After `prune(keep_latest)` only the values the kept checkpoint uses stay stored."""
    saver = backend.make()
    thread_id = f"prune-{uuid.uuid4().hex}"
    parent = None
    for step in range(4):
        cp = checkpoint({"big": [step], "same": ["x"]}, version=str(step + 1))
        cp["channel_versions"]["same"] = "1"
        new_versions = {"big": str(step + 1), **({"same": "1"} if step == 0 else {})}
        stored = await saver.aput(
            config(thread_id, "", parent),
            cp,
            {"source": "loop", "step": step, "parents": {}},
            new_versions,
        )
        parent = stored["configurable"]["checkpoint_id"]
    assert await backend.blob_count(thread_id) == 5
    await saver.aprune([thread_id], strategy="keep_latest")
    assert await backend.blob_count(thread_id) == 2
    kept = await saver.aget_tuple(config(thread_id))
    assert kept is not None
    assert kept.checkpoint["channel_values"] == {"big": [3], "same": ["x"]}
    assert kept.parent_config is None


# -- a real graph -------------------------------------------------------------------------------


class _State(TypedDict):
    steps: Annotated[list[str], operator.add]
    answer: str


def _graph_builder() -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def plan(state: _State) -> dict[str, Any]:
        return {"steps": ["plan"]}

    def ask(state: _State) -> dict[str, Any]:
        return {"answer": interrupt("approve?"), "steps": ["ask"]}

    def finish(state: _State) -> dict[str, Any]:
        return {"steps": ["finish"]}

    builder = StateGraph(_State)
    builder.add_node("plan", plan)
    builder.add_node("ask", ask)
    builder.add_node("finish", finish)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder


async def test_graph_resumes_interrupt_with_new_saver(backend: SaverBackend) -> None:
    """A graph paused on an interrupt resumes from the store with a new saver object."""
    from langgraph.types import Command

    run_config = {"configurable": {"thread_id": f"graph-{uuid.uuid4().hex}"}}
    first = backend.make()
    paused = await _graph_builder().compile(checkpointer=first).ainvoke({"steps": []}, run_config)
    assert paused["__interrupt__"][0].value == "approve?"
    await first.aclose()
    second = backend.make()
    graph = _graph_builder().compile(checkpointer=second)
    assert (await graph.aget_state(run_config)).next == ("ask",)
    done = await graph.ainvoke(Command(resume="yes"), run_config)
    assert done == {"steps": ["plan", "ask", "finish"], "answer": "yes"}
    history = [state async for state in graph.aget_state_history(run_config)]
    assert len(history) >= 4


def test_graph_runs_on_blocking_methods(tmp_path: Path) -> None:
    """A graph invoked synchronously checkpoints through the blocking methods."""
    from langgraph.types import Command

    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}"
    run_config = {"configurable": {"thread_id": "sync-thread"}}
    with MemweaveCheckpointSaver.from_url(url) as saver:
        graph = _graph_builder().compile(checkpointer=saver)
        graph.invoke({"steps": []}, run_config)
    with MemweaveCheckpointSaver.from_url(url) as saver:
        graph = _graph_builder().compile(checkpointer=saver)
        done = graph.invoke(Command(resume="ok"), run_config)
        assert done == {"steps": ["plan", "ask", "finish"], "answer": "ok"}
        assert len(list(saver.list(run_config, limit=2))) == 2


# -- spanning threads ---------------------------------------------------------------------------


async def test_delete_for_runs_reaches_every_thread(backend: SaverBackend) -> None:
    """`delete_for_runs` deletes a run's checkpoints in every thread and namespace, only those."""
    saver = backend.make()
    run, other = str(uuid.uuid4()), str(uuid.uuid4())
    threads = [f"runs-{uuid.uuid4().hex}" for _ in range(2)]
    for thread_id in threads:
        for ns, run_id in (("", run), ("child:1", run), ("", other)):
            metadata = {"source": "loop", "step": 0, "parents": {}, "run_id": run_id}
            await _put(saver, thread_id, {"v": [run_id]}, ns=ns, metadata=metadata)
    await saver.adelete_for_runs([run])
    for thread_id in threads:
        left = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})]
        assert [t.metadata["run_id"] for t in left] == [other]


async def test_list_without_config_spans_threads(backend: SaverBackend) -> None:
    """`list(None, filter=...)` finds matching checkpoints of every thread, newest first."""
    saver = backend.make()
    marker = uuid.uuid4().hex
    ids = []
    for thread_id in (f"all-{uuid.uuid4().hex}", f"all-{uuid.uuid4().hex}"):
        for _ in range(2):
            metadata = {"source": "loop", "step": 0, "parents": {}, "marker": marker}
            ids.append(await _put(saver, thread_id, {"x": [1]}, metadata=metadata))
    found = [t.checkpoint["id"] async for t in saver.alist(None, filter={"marker": marker})]
    assert found == sorted(ids, reverse=True)
    limited = [t async for t in saver.alist(None, filter={"marker": marker}, limit=3)]
    assert [t.checkpoint["id"] for t in limited] == found[:3]


# -- the saver object ---------------------------------------------------------------------------


def test_put_keeps_generated_thread_ids_apart(tmp_path: Path) -> None:
    """Any two distinct thread ids (and namespaces) are separate, whatever they hold."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = st.text(
        st.characters(
            categories=("L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Co"), blacklist_characters="\x00"
        )
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'generated.db'}"
    with MemweaveCheckpointSaver.from_url(url) as saver:

        @settings(max_examples=30)
        @given(st.lists(st.tuples(names.filter(bool), names), min_size=2, max_size=4, unique=True))
        def check(places: list[tuple[str, str]]) -> None:
            prefix = uuid.uuid4().hex
            for thread_id, ns in places:
                cp = checkpoint({"owner": [thread_id, ns]})
                saver.put(config(prefix + thread_id, ns), cp, {}, {"owner": "1"})
            for thread_id, ns in places:
                tup = saver.get_tuple(config(prefix + thread_id, ns))
                assert tup is not None
                assert tup.checkpoint["channel_values"]["owner"] == [thread_id, ns]

        check()


async def test_saver_refuses_calls_after_aclose(tmp_path: Path) -> None:
    """Every method of a closed saver raises `ProviderClosed`; closing again is a no-op."""
    from memweave.errors import ProviderClosed

    saver = MemweaveCheckpointSaver.from_url(_sqlite(tmp_path, "c"))
    await saver.aclose()
    await saver.aclose()
    assert saver.closed
    with pytest.raises(ProviderClosed):
        await saver.aget_tuple(config("t"))
    with pytest.raises(ProviderClosed):
        await saver.aput(config("t"), checkpoint({}), {}, {})


async def test_blocking_method_refuses_running_event_loop(tmp_path: Path) -> None:
    """A blocking method called inside a running event loop raises `SyncCallInEventLoop`."""
    from memweave.errors import SyncCallInEventLoop

    async with MemweaveCheckpointSaver.from_url(
        f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    ) as saver:
        with pytest.raises(SyncCallInEventLoop, match="aget_tuple"):
            saver.get_tuple(config("t"))
        with pytest.raises(SyncCallInEventLoop, match="alist"):
            list(saver.list(config("t")))


def test_saver_from_url_serves_several_event_loops(tmp_path: Path) -> None:
    """A saver built from a URL works in one event loop after another."""
    import asyncio

    saver = MemweaveCheckpointSaver.from_url(_sqlite(tmp_path, "loops"))
    stored = asyncio.run(saver.aput(config("t"), checkpoint({"a": [1]}), {}, {"a": "1"}))
    found = asyncio.run(saver.aget_tuple(stored))
    asyncio.run(saver.aclose())
    assert found is not None
    assert found.checkpoint["channel_values"] == {"a": [1]}


def test_saver_closes_connections_of_finished_event_loops(tmp_path: Path) -> None:
    """The SQLite connection an event loop used is closed when that loop ends: no aiosqlite
    thread outlives it, and none is left for the garbage collector to close."""
    import asyncio
    import gc
    import threading
    import warnings

    before = set(threading.enumerate())
    saver = MemweaveCheckpointSaver.from_url(_sqlite(tmp_path, "ended"))
    stored = asyncio.run(saver.aput(config("t"), checkpoint({"a": [1]}), {}, {"a": "1"}))
    assert asyncio.run(saver.aget_tuple(stored)) is not None
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:
        thread.join(timeout=10)  # a closed connection's thread ends at once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    asyncio.run(saver.aclose())
    assert [t.name for t in started if t.is_alive()] == []
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_saver_leaves_given_engine_open(tmp_path: Path) -> None:
    """A saver given an engine as `client` uses it and leaves it open when closed."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'e.db'}")
    try:
        async with MemweaveCheckpointSaver(client=engine) as saver:
            await _put(saver, "t", {"a": [1]})
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM memweave_lg_checkpoints"))
            assert rows.scalar() == 1
    finally:
        await engine.dispose()


async def test_saver_namespace_names_the_tables(tmp_path: Path) -> None:
    """`namespace=N` stores in tables `N_lg_...`; the deprecated `table_prefix=` and `engine=`
    warn and name the same tables and engine as before."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    try:
        async with MemweaveCheckpointSaver(client=engine, namespace="app") as saver:
            await _put(saver, "t", {"a": [1]})
        with pytest.warns(DeprecationWarning, match="deprecated") as caught:
            old = MemweaveCheckpointSaver(engine=engine, table_prefix="app_")
        assert [str(w.message).split("=")[0] for w in caught] == [
            "MemweaveCheckpointSaver(engine",
            "MemweaveCheckpointSaver(table_prefix",
        ]
        assert {w.filename for w in caught} == {__file__}  # the warnings name the caller's line
        async with old:
            assert await old.aget_tuple(config("t")) is not None
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM app_lg_checkpoints"))
            assert rows.scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.xdist_group("redis")
async def test_saver_leaves_given_redis_client_open(redis_url: str) -> None:
    """A saver given a Redis client uses it and leaves it open; a decoding client is refused."""
    from redis.asyncio import Redis

    from memweave.errors import ConfigurationError

    prefix = f"mwt-lg-{uuid.uuid4().hex[:10]}"
    client = Redis.from_url(redis_url)
    try:
        async with MemweaveCheckpointSaver(client=client, namespace=prefix) as saver:
            await _put(saver, "t", {"a": [1]})
        assert await client.ping()
        assert await client.hlen(f"{prefix}:lg:threads") == 1
        with pytest.warns(DeprecationWarning, match="prefix"):
            old = MemweaveCheckpointSaver(client=client, prefix=prefix)
        async with old:
            assert await old.aget_tuple(config("t")) is not None
        with pytest.raises(ConfigurationError, match="decode_responses"):
            MemweaveCheckpointSaver(client=Redis.from_url(redis_url, decode_responses=True))
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        for key in keys:
            await client.delete(key)
        await client.aclose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "memory://"}, "InMemorySaver"),
        ({"url": "sqlite+aiosqlite:///x.db", "client": object()}, "one of url and client"),
        ({"url": "sqlite+aiosqlite:///x.db", "namespace": "bad-name"}, "namespace"),
        ({"url": "redis://127.0.0.1:1/0", "namespace": "a{b}"}, "namespace"),
        ({"url": "sqlite+aiosqlite:///x.db", "namespace": ""}, "namespace"),
        ({"url": "redis://127.0.0.1:1/0", "namespace": "a", "prefix": "a"}, "namespace= only"),
    ],
)
def test_saver_rejects_bad_configuration(options: dict[str, Any], message: str) -> None:
    """A bad URL scheme, option or combination raises `ConfigurationError` saying which."""
    from memweave.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        MemweaveCheckpointSaver(**options)


async def test_put_rejects_unstorable_ids(tmp_path: Path) -> None:
    """A thread id holding NUL, or a config without a thread, raises `InvalidArgument`."""
    from memweave.errors import InvalidArgument

    async with MemweaveCheckpointSaver.from_url(
        f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"
    ) as saver:
        with pytest.raises(InvalidArgument, match="thread_id"):
            await saver.aput(config("a\x00b"), checkpoint({}), {}, {})
        with pytest.raises(InvalidArgument, match="thread_id"):
            await saver.aget_tuple({"configurable": {}})
        with pytest.raises(InvalidArgument, match="run_ids"):
            await saver.adelete_for_runs("run-1")


async def test_get_tuple_never_unpickles(tmp_path: Path) -> None:
    """A stored value of type `pickle` is reported corrupt, never unpickled."""
    async with MemweaveCheckpointSaver.from_url(
        f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    ) as saver:
        stored = await saver.aput(config("t"), checkpoint({}), {}, {})
        saver.serde = _Typed("pickle")
        await saver.aput_writes(stored, [("ch", "payload")], "task")
        saver.serde = safe_serializer()
        with pytest.raises(CorruptCheckpoint, match="pickle"):
            await saver.aget_tuple(stored)


class _Typed:
    """A serializer labelling every value with a fixed type name."""

    def __init__(self, type_: str) -> None:
        self.type = type_

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.type, str(obj).encode()

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return data[1].decode()


def test_package_without_langgraph_names_the_extra() -> None:
    """Importing the integration without langgraph raises `MissingDependency` for the extra."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['langgraph'] = None\n"
        "from memweave.errors import MissingDependency\n"
        "try:\n    import memweave.integrations.langgraph\n"
        "except MissingDependency as exc:\n    print(exc.extra)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "langgraph", done.stderr
