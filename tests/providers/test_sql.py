"""Backend-only checks of `SQLChatHistoryProvider`: schema, indexes, engines, URLs, errors."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, event, func, inspect, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memweave import ChatMessage
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    MissingDependency,
    SchemaMismatch,
)
from memweave.providers import SessionInfo, from_url
from memweave.providers._sql_schema import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    build_statements,
    tables_for,
)
from memweave.providers.sql import SQLChatHistoryProvider, build_metadata, metadata
from tests.conformance._builders import make_messages, texts
from tests.conformance._harness_sql import (
    DEFAULT_MYSQL_URL,
    DEFAULT_POSTGRES_URL,
    check_reachable,
)

DIALECTS = ["sqlite", "postgres", "mysql"]


@pytest.fixture(scope="module", params=DIALECTS)
def sql_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of each database under test; servers that are down skip their params."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sql') / 'test.db'}"
    if request.param == "postgres":
        url = os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        check_reachable(url, "PostgreSQL")
        return url
    url = os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    check_reachable(url, "MariaDB/MySQL")
    return url


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def server_url(request: pytest.FixtureRequest) -> str:
    """URL of each database server under test (they have roles; SQLite has none)."""
    if request.param == "postgres":
        url = os.environ.get("MEMWEAVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        check_reachable(url, "PostgreSQL")
        return url
    url = os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    check_reachable(url, "MariaDB/MySQL")
    return url


@pytest.fixture
async def make_provider(
    sql_url: str,
) -> AsyncIterator[Callable[..., SQLChatHistoryProvider]]:
    """Factory of providers on `sql_url`; drops the tables of every private prefix it used
    and closes every provider."""
    made: list[SQLChatHistoryProvider] = []

    def make(**options: object) -> SQLChatHistoryProvider:
        provider = SQLChatHistoryProvider(sql_url, **options)  # type: ignore[arg-type]
        made.append(provider)
        return provider

    yield make
    prefixes = {p.table_prefix for p in made} - {"memweave_"}
    if prefixes:
        engine = create_async_engine(sql_url)
        try:
            async with engine.begin() as conn:
                for prefix in prefixes:
                    await conn.run_sync(tables_for(prefix).metadata.drop_all)
        finally:
            await engine.dispose()
    for provider in made:
        await provider.aclose()


@pytest.fixture
def private_namespace() -> str:
    """A namespace no other test uses, so a test may change or drop its tables."""
    return f"mwt{uuid.uuid4().hex[:10]}"


@pytest.fixture
def private_prefix(private_namespace: str) -> str:
    """The start of the table names of `private_namespace`."""
    return f"{private_namespace}_"


@pytest.fixture
def session_id() -> str:
    return f"mwt-sql-{uuid.uuid4().hex}"


# -- schema -------------------------------------------------------------------------------------


async def test_schema_version_row_is_written(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """First use creates the tables and records the schema version."""
    provider = make_provider(namespace=private_namespace)
    await provider.count_messages("x")
    schema = tables_for(private_prefix).schema
    async with provider.engine.connect() as conn:
        rows = (await conn.execute(select(schema.c.name, schema.c.version))).all()
    assert [tuple(row) for row in rows] == [(SCHEMA_NAME, SCHEMA_VERSION)]


async def test_schema_version_mismatch_raises(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """Tables recorded with another schema version raise `SchemaMismatch` on first use."""
    first = make_provider(namespace=private_namespace)
    await first.count_messages("x")
    schema = tables_for(private_prefix).schema
    async with first.engine.begin() as conn:
        await conn.execute(update(schema).values(version=SCHEMA_VERSION + 98))
    second = make_provider(namespace=private_namespace)
    with pytest.raises(SchemaMismatch) as info:
        await second.add_messages("x", [ChatMessage.user("hi")])
    assert info.value.found == SCHEMA_VERSION + 98
    assert info.value.expected == SCHEMA_VERSION


async def test_create_tables_false_without_tables_raises(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """With `create_tables=False`, missing tables are a `ConfigurationError`, not a crash."""
    provider = make_provider(namespace=private_namespace, create_tables=False)
    with pytest.raises(ConfigurationError, match=f"{private_prefix}schema"):
        await provider.list_sessions()


async def test_create_tables_false_uses_migrated_tables(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """Tables created from the public `MetaData` (as a migration would) are used as they are;
    with `create_tables=False` setup writes nothing, not even the version row."""
    provider = make_provider(namespace=private_namespace, create_tables=False)
    async with provider.engine.begin() as conn:
        await conn.run_sync(build_metadata(namespace=private_namespace).create_all)
    await provider.add_messages("s", make_messages(2))
    assert texts(await provider.list_messages("s")) == texts(make_messages(2))
    info = await provider.session_info("s")
    assert info is not None
    assert info.created_at is not None
    schema = tables_for(private_prefix).schema
    async with provider.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(schema))).scalar_one() == 0


def test_metadata_is_public_for_migrations() -> None:
    """`metadata` and `build_metadata(namespace=...)` expose the tables, one object per namespace,
    with version 2's session times and their index."""
    assert isinstance(metadata, MetaData)
    assert set(metadata.tables) == {"memweave_messages", "memweave_sessions", "memweave_schema"}
    sessions = metadata.tables["memweave_sessions"]
    assert {"created_at", "updated_at"} <= set(sessions.c.keys())
    assert sessions.c.updated_at.nullable
    indexes = {index.name: [c.name for c in index.columns] for index in sessions.indexes}
    assert indexes["memweave_sessions_updated"] == ["updated_at", "session_id"]
    custom = build_metadata(namespace="app")
    assert set(custom.tables) == {"app_messages", "app_sessions", "app_schema"}
    assert build_metadata(namespace="app") is custom
    provider = SQLChatHistoryProvider("sqlite+aiosqlite://", namespace="app")
    assert provider.metadata is custom


@pytest.mark.parametrize("namespace", ["", "1abc", "bad-prefix", "a b", "x" * 32, "ü"])
def test_bad_namespace_raises(namespace: str) -> None:
    """A namespace must be a short SQL identifier, never quoted into statements."""
    with pytest.raises(ConfigurationError, match="namespace"):
        SQLChatHistoryProvider("sqlite+aiosqlite://", namespace=namespace)


async def test_indexes_exist(make_provider: Callable[..., SQLChatHistoryProvider]) -> None:
    """The message table has the (session, key) index and the unique (session, message id)."""
    provider = make_provider()
    await provider.count_messages("x")
    name = tables_for("memweave_").messages.name

    def describe(sync_conn: object) -> tuple[list[list[str]], list[list[str]]]:
        inspector = inspect(sync_conn)
        indexes = inspector.get_indexes(name)
        uniques = [list(u["column_names"]) for u in inspector.get_unique_constraints(name)]
        uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
        return [list(i["column_names"]) for i in indexes], uniques

    async with provider.engine.connect() as conn:
        indexes, uniques = await conn.run_sync(describe)
    assert ["session_id", "id"] in indexes
    assert ["session_id", "message_id"] in uniques


def test_read_last_uses_the_session_key_index(tmp_path: Path) -> None:
    """`limit=N` walks the (session, key) index backwards instead of sorting the session."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    tables = tables_for("memweave_")
    tables.metadata.create_all(engine)
    compiled = build_statements(tables, engine.dialect).read_last.compile(dialect=engine.dialect)
    values = {**compiled.params, "sid": "s", "limit": 20}
    params = tuple(values[name] for name in compiled.positiontup or [])
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    engine.dispose()
    plan = " ".join(str(row) for row in rows)
    assert "memweave_messages_session_key" in plan
    assert "TEMP B-TREE" not in plan


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (sqlite.dialect(), "ON CONFLICT (session_id, message_id) DO NOTHING"),
        (postgresql.dialect(), "ON CONFLICT (session_id, message_id) DO NOTHING"),
        (mysql.dialect(), "INSERT IGNORE INTO"),
    ],
)
def test_append_uses_insert_or_ignore(dialect: object, expected: str) -> None:
    """Appends rely on the unique constraint and the dialect's insert-or-ignore."""
    statements = build_statements(tables_for("memweave_"), dialect)  # type: ignore[arg-type]
    assert expected in str(statements.insert.compile(dialect=dialect))  # type: ignore[attr-defined]


async def test_stored_count_matches_rows(
    make_provider: Callable[..., SQLChatHistoryProvider], session_id: str
) -> None:
    """The per-session count kept in the sessions table equals the stored rows after
    duplicates, trims and removals."""
    provider = make_provider(max_messages=7)
    messages = make_messages(10)
    await provider.add_messages(session_id, messages[:4])
    await provider.add_messages(session_id, messages[2:9])
    await provider.add_messages(session_id, messages)
    messages_table = tables_for("memweave_").messages
    async with provider.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(func.count()).where(messages_table.c.session_id == session_id)
            )
        ).scalar_one()
    assert rows == 7
    assert await provider.count_messages(session_id) == 7
    await provider.clear(session_id)


async def test_purge_expired_deletes_rows_of_expired_sessions_only(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """`purge_expired()` reclaims expired sessions' rows and leaves live ones alone."""
    provider = make_provider(ttl=timedelta(hours=1), namespace=private_namespace)
    await provider.add_messages("old", make_messages(3))
    await provider.add_messages("live", make_messages(2))
    tables = tables_for(private_prefix)
    async with provider.engine.begin() as conn:
        await conn.execute(
            update(tables.sessions)
            .where(tables.sessions.c.session_id == "old")
            .values(expires_at=0.0)
        )
    assert await provider.purge_expired() == 1
    async with provider.engine.connect() as conn:
        left = await conn.execute(
            select(tables.messages.c.session_id, func.count()).group_by(
                tables.messages.c.session_id
            )
        )
        assert [tuple(row) for row in left] == [("live", 2)]
    assert await provider.count_messages("live") == 2


def _append_in_namespace(url: str, namespace: str, worker: int, start_at: float) -> None:
    """Process entry point: append 20 messages to one session in a namespace."""
    import asyncio
    import time

    async def run() -> None:
        async with SQLChatHistoryProvider(url, namespace=namespace) as history:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            for i in range(20):
                await history.add_messages("s", [ChatMessage.user(f"w{worker}-{i}")])

    asyncio.run(run())


async def test_first_use_from_many_processes_creates_tables_once(
    make_provider: Callable[..., SQLChatHistoryProvider], private_namespace: str
) -> None:
    """Processes that all find the tables missing at once each end up using the same ones."""
    import asyncio
    import multiprocessing
    import time

    provider = make_provider(namespace=private_namespace)
    url = provider.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    processes = [
        context.Process(target=_append_in_namespace, args=(url, private_namespace, w, start_at))
        for w in range(4)
    ]
    for process in processes:
        process.start()
    await asyncio.to_thread(lambda: [p.join(timeout=120) for p in processes])
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    assert await provider.count_messages("s") == 80


# -- engines and URLs ---------------------------------------------------------------------------


async def test_aclose_leaves_a_passed_engine_open(sql_url: str, session_id: str) -> None:
    """`aclose()` never disposes an engine the caller passed in."""
    engine = create_async_engine(sql_url)
    disposed: list[object] = []
    event.listen(engine.sync_engine, "engine_disposed", disposed.append)
    try:
        async with SQLChatHistoryProvider(client=engine) as provider:
            await provider.add_messages(session_id, make_messages(1))
            await provider.clear(session_id)
        assert disposed == []
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_aclose_disposes_an_engine_built_from_a_url(sql_url: str) -> None:
    """An engine the provider built from a URL is disposed by `aclose()`."""
    provider = SQLChatHistoryProvider(sql_url)
    disposed: list[object] = []
    event.listen(provider.engine.sync_engine, "engine_disposed", disposed.append)
    await provider.count_messages("x")
    await provider.aclose()
    assert len(disposed) == 1


async def test_from_url_builds_sql_provider(sql_url: str, session_id: str) -> None:
    """`from_url` turns each dialect's URL, with or without the driver, into this backend."""
    bare = sql_url.replace("+aiosqlite", "").replace("+asyncpg", "").replace("+aiomysql", "")
    for url in (sql_url, bare):
        history = from_url(url, max_messages=10)
        try:
            assert isinstance(history, SQLChatHistoryProvider)
            assert isinstance(history.engine, AsyncEngine)
            await history.add_messages(session_id, make_messages(2))
            assert await history.count_messages(session_id) == 2
            await history.clear(session_id)
        finally:
            await history.aclose()


async def test_in_memory_sqlite_serves_concurrent_tasks() -> None:
    """`sqlite+aiosqlite://` (one shared in-memory connection) still keeps every rule."""
    import asyncio

    async with SQLChatHistoryProvider("sqlite+aiosqlite://") as history:

        async def writer(w: int) -> None:
            for i in range(10):
                await history.add_messages("s", [ChatMessage.user(f"w{w}-{i}")])
                await history.list_messages("s", limit=3)

        await asyncio.gather(*(writer(w) for w in range(5)))
        assert await history.count_messages("s") == 50


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("postgresql+asyncpg://root@127.0.0.1/test", "asyncpg", "postgres"),
        ("postgresql://root@127.0.0.1/test", "asyncpg", "postgres"),
        ("mysql+aiomysql://root@127.0.0.1/test", "aiomysql", "mysql"),
        ("mariadb://root@127.0.0.1/test", "aiomysql", "mysql"),
    ],
)
def test_missing_driver_raises_missing_dependency(
    monkeypatch: pytest.MonkeyPatch, url: str, package: str, extra: str
) -> None:
    """A URL whose driver is not installed names the extra that installs it."""
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(MissingDependency) as info:
        SQLChatHistoryProvider(url)
    assert (info.value.package, info.value.extra) == (package, extra)
    assert f"memweave[{extra}]" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://ada:s3cret@127.0.0.1:1/test",
        "mysql+aiomysql://ada:s3cret@127.0.0.1:1/test",
    ],
)
async def test_unreachable_server_masks_password(url: str) -> None:
    """An unreachable server raises `BackendUnavailable` whose URL and message hide the
    password."""
    async with SQLChatHistoryProvider(url) as history:
        with pytest.raises(BackendUnavailable) as info:
            await history.add_messages("s", [ChatMessage.user("hi")])
    assert "s3cret" not in str(info.value)
    assert info.value.url is not None
    assert "s3cret" not in info.value.url
    assert "***" in info.value.url
    assert "sqlalchemy" not in type(info.value).__module__


def test_sync_driver_is_a_configuration_error() -> None:
    """A URL naming a synchronous driver is rejected up front."""
    with pytest.raises(ConfigurationError):
        SQLChatHistoryProvider("sqlite+pysqlite:///x.db")


def test_url_and_client_together_raise() -> None:
    """Passing both `url` and `client` is ambiguous."""
    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="either"):
        SQLChatHistoryProvider("sqlite+aiosqlite://", client=engine)


# -- large batches -----------------------------------------------------------------------------


async def test_large_batch_is_stored_whole_in_order_and_once(
    make_provider: Callable[..., SQLChatHistoryProvider], session_id: str
) -> None:
    """A batch larger than one statement's share of rows and of bytes (MariaDB sends it as
    several multi-row INSERTs) is stored complete, in order, and a retry stores nothing."""
    provider = make_provider()
    bulky = [ChatMessage.user(f"big {i} " + "x" * 3_000_000) for i in range(3)]
    batch = [*make_messages(1_100), *bulky, *make_messages(5, text="after")]
    try:
        await provider.add_messages(session_id, batch)
        await provider.add_messages(session_id, batch)
        stored = await provider.list_messages(session_id)
        assert [m.id for m in stored] == [m.id for m in batch]
        assert texts(stored) == texts(batch)
        assert await provider.count_messages(session_id) == len(batch)
    finally:
        await provider.clear(session_id)


# -- SQLite's system-message index --------------------------------------------------------------


async def _system_read_plan(provider: SQLChatHistoryProvider) -> str:
    statements = await provider._ready()
    sql = str(statements.read_system.compile(dialect=provider.engine.dialect))
    async with provider.engine.connect() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("s", "s"))
        return " ".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("system_index_first", [True, False])
async def test_sqlite_system_read_uses_its_index_whatever_the_creation_order(
    tmp_path: Path, system_index_first: bool
) -> None:
    """A budgeted read's system-message query searches the system index, not the session:
    SQLite's planner must not depend on which index happened to be created last."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}"
    provider = SQLChatHistoryProvider(url)
    try:
        await provider.count_messages("s")
        tables = tables_for("memweave_")
        session_index = next(
            i for i in tables.messages.indexes if i.name == "memweave_messages_session_key"
        )
        order = [tables.sqlite_system_index, session_index]
        if not system_index_first:
            order.reverse()
        async with provider.engine.begin() as conn:
            for index in order:
                await conn.run_sync(index.drop)
            for index in order:
                await conn.run_sync(index.create)
        assert "memweave_messages_system_role" in await _system_read_plan(provider)
    finally:
        await provider.aclose()


async def test_sqlite_system_index_is_added_to_tables_made_without_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    provider = SQLChatHistoryProvider(url)
    await provider.add_messages("s", [ChatMessage.system("be brief"), ChatMessage.user("hi")])
    async with provider.engine.begin() as conn:
        await conn.run_sync(tables_for("memweave_").sqlite_system_index.drop)
    await provider.aclose()
    reopened = SQLChatHistoryProvider(url)
    try:
        assert [m.text for m in await reopened.list_messages("s")] == ["be brief", "hi"]
        assert "memweave_messages_system_role" in await _system_read_plan(reopened)
    finally:
        await reopened.aclose()


# -- schema version 2: session times ------------------------------------------------------------


async def _downgrade_to_version_1(engine: AsyncEngine, prefix: str) -> None:
    """Turn current tables into those of schema version 1 (no session times, no index)."""
    tables = tables_for(prefix)
    sessions = tables.sessions.name
    async with engine.begin() as conn:
        await conn.run_sync(tables.updated_index.drop)
        for column in ("created_at", "updated_at"):
            await conn.exec_driver_sql(f"ALTER TABLE {sessions} DROP COLUMN {column}")
        await conn.execute(update(tables.schema).values(version=1))


async def _layout(engine: AsyncEngine, prefix: str) -> tuple[int, set[str], set[str]]:
    """The version row, the sessions table's columns and its index names."""
    tables = tables_for(prefix)

    def describe(sync_conn: Any) -> tuple[set[str], set[str]]:
        inspector = inspect(sync_conn)
        columns = {c["name"] for c in inspector.get_columns(tables.sessions.name)}
        indexes = {str(i["name"]) for i in inspector.get_indexes(tables.sessions.name)}
        return columns, indexes

    async with engine.connect() as conn:
        version = (await conn.execute(select(tables.schema.c.version))).scalar_one()
        columns, indexes = await conn.run_sync(describe)
    return version, columns, indexes


async def test_version_1_tables_are_upgraded_in_place(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """With `create_tables=True`, version 1 tables gain the session times and their index
    and are recorded as version 2; their sessions read as before, with unknown times."""
    first = make_provider(namespace=private_namespace)
    await first.add_messages("legacy", make_messages(3))
    await _downgrade_to_version_1(first.engine, private_prefix)
    provider = make_provider(namespace=private_namespace)
    assert texts(await provider.list_messages("legacy")) == texts(make_messages(3))
    assert await provider.session_info("legacy") == SessionInfo(
        id="legacy", message_count=3, created_at=None, updated_at=None
    )
    version, columns, indexes = await _layout(provider.engine, private_prefix)
    assert version == SCHEMA_VERSION == 2
    assert {"created_at", "updated_at"} <= columns
    assert f"{private_prefix}sessions_updated" in indexes
    await provider.add_messages("legacy", make_messages(1, text="later"))
    info = await provider.session_info("legacy")
    assert info is not None
    assert info.created_at is None
    assert info.updated_at is not None


async def test_version_1_tables_upgrade_once_under_concurrent_providers(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """Providers on separate connections that find version 1 tables at once all end up on
    the same version 2 tables."""
    first = make_provider(namespace=private_namespace)
    await first.add_messages("legacy", make_messages(3))
    await _downgrade_to_version_1(first.engine, private_prefix)
    providers = [make_provider(namespace=private_namespace) for _ in range(4)]
    counts = await asyncio.gather(*(p.count_messages("legacy") for p in providers))
    assert counts == [3, 3, 3, 3]
    version, columns, _ = await _layout(first.engine, private_prefix)
    assert version == 2
    assert {"created_at", "updated_at"} <= columns


async def test_create_tables_false_on_version_1_says_how_to_upgrade(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """With `create_tables=False`, version 1 tables raise `SchemaMismatch` naming both ways
    to upgrade, and are left as they are."""
    first = make_provider(namespace=private_namespace)
    await first.add_messages("legacy", make_messages(1))
    await _downgrade_to_version_1(first.engine, private_prefix)
    provider = make_provider(namespace=private_namespace, create_tables=False)
    with pytest.raises(SchemaMismatch) as info:
        await provider.list_messages("legacy")
    assert (info.value.found, info.value.expected) == (1, 2)
    assert "create_tables=True" in str(info.value)
    assert "updated_at" in str(info.value)
    assert (await _layout(first.engine, private_prefix))[0] == 1


async def test_prune_counts_a_legacy_session_as_updated_when_first_seen(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """A session stored before times were recorded is stamped by the first `prune` that sees
    it, and kept; a later sweep prunes it once it is idle long enough."""
    first = make_provider(namespace=private_namespace)
    await first.add_messages("legacy", make_messages(2))
    await _downgrade_to_version_1(first.engine, private_prefix)
    provider = make_provider(namespace=private_namespace)
    tiny = timedelta(microseconds=1)
    assert await provider.prune(tiny, dry_run=True) == 0
    assert (await provider.session_info("legacy")).updated_at is None  # type: ignore[union-attr]
    assert await provider.prune(tiny) == 0
    stamped = await provider.session_info("legacy")
    assert stamped is not None
    assert stamped.created_at is None
    assert stamped.updated_at is not None
    await asyncio.sleep(0.01)
    assert await provider.prune(tiny, dry_run=True) == 1
    assert await provider.prune(tiny) == 1
    assert await provider.list_sessions() == []


async def test_prune_counts_and_deletes_each_of_many_sessions_with_equal_times(
    make_provider: Callable[..., SQLChatHistoryProvider],
    private_prefix: str,
    private_namespace: str,
) -> None:
    """Legacy sessions stamped a batch at a time share one `updated_at` per batch; a dry run
    pages past them by id and counts each once, as many as the sweep then deletes."""
    provider = make_provider(namespace=private_namespace)
    await provider.count_messages("x")  # creates the tables
    tables = tables_for(private_prefix)
    rows = [{"session_id": f"s{i:04}", "message_count": 1} for i in range(1203)]
    async with provider.engine.begin() as conn:
        await conn.execute(tables.sessions.insert(), rows)
    tiny = timedelta(microseconds=1)
    assert await provider.prune(tiny) == 0  # stamps them, in three batches
    async with provider.engine.connect() as conn:
        times = (
            await conn.execute(select(func.count(tables.sessions.c.updated_at.distinct())))
        ).scalar_one()
    assert times <= 3
    await asyncio.sleep(0.01)
    assert await provider.prune(tiny, dry_run=True) == 1203
    assert await provider.prune(tiny) == 1203
    assert await provider.prune(tiny, dry_run=True) == 0


async def test_list_sessions_after_holding_characters_no_id_holds(
    make_provider: Callable[..., SQLChatHistoryProvider], session_id: str
) -> None:
    """An `after` with a NUL, a control character or a lone surrogate (which drivers refuse
    to send) still bounds the page exactly."""
    provider = make_provider()
    base = f"{session_id}-"
    stored = [f"{base}a", f"{base}a b", f"{base}a\u00a0", f"{base}a\ue000", f"{base}b"]
    for sid in stored:
        await provider.add_messages(sid, make_messages(1))
    try:
        for after in (f"{base}a\x00", f"{base}a\x1f", f"{base}a\x85", f"{base}a\ud800"):
            expected = sorted(sid for sid in stored if sid > after)
            assert await provider.list_sessions(base, after=after) == expected, repr(after)
    finally:
        for sid in stored:
            await provider.clear(sid)


# -- reads never write --------------------------------------------------------------------------


def _is_write(statement: str) -> bool:
    return statement.lstrip().split(None, 1)[0].upper() not in (
        "SELECT",
        "PRAGMA",
        "SHOW",
        "DESCRIBE",
    )


async def test_reads_of_current_tables_run_only_selects(
    make_provider: Callable[..., SQLChatHistoryProvider], private_namespace: str
) -> None:
    """Setting up on current tables and every read (list, page, info, count, dry-run prune)
    send only SELECTs: no version row, no DDL, no locks."""
    writer = make_provider(namespace=private_namespace)
    messages = make_messages(5)
    await writer.add_messages("s", messages)
    reader = make_provider(namespace=private_namespace)
    sent: list[str] = []
    event.listen(
        reader.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: sent.append(statement),
    )
    assert await reader.list_sessions(limit=10) == ["s"]
    assert len(await reader.list_messages("s", limit=2, before=messages[3].id)) == 2
    assert len([m async for m in reader.iter_messages("s", page_size=2)]) == 5
    assert (await reader.session_info("s")).message_count == 5  # type: ignore[union-attr]
    assert await reader.count_messages("s") == 5
    assert await reader.prune(timedelta(days=1), dry_run=True) == 0
    assert sent
    assert [s for s in sent if _is_write(s)] == []


async def test_sqlite_setup_takes_no_write_lock_on_current_tables(tmp_path: Path) -> None:
    """While another connection holds the SQLite file's write lock, a new provider sets up
    and reads at once: it takes BEGIN IMMEDIATE only when it has something to write."""
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    async with SQLChatHistoryProvider(url) as writer:
        await writer.add_messages("s", make_messages(3))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with SQLChatHistoryProvider(url) as reader:
            reads = asyncio.gather(
                reader.list_sessions(), reader.session_info("s"), reader.list_messages("s")
            )
            # A guard against hanging for the 30 s busy timeout, not a timing check.
            sessions, info, stored = await asyncio.wait_for(reads, timeout=10)
        assert sessions == ["s"]
        assert info is not None
        assert len(stored) == 3
    finally:
        holder.rollback()
        holder.close()


async def _grant_select_only(admin: AsyncEngine, role: str, table_names: list[str]) -> str:
    """Create a login role that may only SELECT from these tables; return its URL."""
    url = admin.url
    async with admin.begin() as conn:
        if admin.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
            await conn.exec_driver_sql(f"GRANT SELECT ON {', '.join(table_names)} TO {role}")
        else:
            await conn.exec_driver_sql(f"CREATE USER '{role}'@'%%'")
            for name in table_names:
                await conn.exec_driver_sql(
                    f"GRANT SELECT ON `{url.database}`.`{name}` TO '{role}'@'%%'"
                )
    return url.set(username=role, password=None).render_as_string(hide_password=False)


async def _drop_role(admin: AsyncEngine, role: str, table_names: list[str]) -> None:
    async with admin.begin() as conn:
        if admin.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"REVOKE ALL ON {', '.join(table_names)} FROM {role}")
            await conn.exec_driver_sql(f"DROP ROLE {role}")
        else:
            await conn.exec_driver_sql(f"DROP USER '{role}'@'%%'")


async def test_select_only_role_lists_reads_and_pages(
    server_url: str, private_prefix: str, private_namespace: str
) -> None:
    """A database role that may only SELECT can list, read, page, export and count (setup
    on current tables writes nothing); each write raises `ConfigurationError` saying so."""
    messages = make_messages(6)
    owner = SQLChatHistoryProvider(server_url, namespace=private_namespace)
    admin = create_async_engine(server_url)
    role = f"mwro{uuid.uuid4().hex[:10]}"
    table_names = sorted(tables_for(private_prefix).metadata.tables)
    try:
        await owner.add_messages("s", messages)
        reader_url = await _grant_select_only(admin, role, table_names)
        try:
            async with SQLChatHistoryProvider(reader_url, namespace=private_namespace) as reader:
                assert await reader.list_sessions(limit=5) == ["s"]
                assert texts(await reader.list_messages("s")) == texts(messages)
                older = await reader.list_messages("s", limit=2, before=messages[4].id)
                assert texts(older) == texts(messages[2:4])
                exported = [m async for m in reader.iter_messages("s", page_size=4)]
                assert texts(exported) == texts(messages)
                info = await reader.session_info("s")
                assert info is not None
                assert info.message_count == 6
                assert await reader.count_messages("s") == 6
                assert await reader.prune(timedelta(days=1), dry_run=True) == 0
                writes = [
                    reader.add_messages("s", make_messages(1, text="more")),
                    reader.delete_messages("s", [messages[0].id]),
                    reader.truncate_after("s", messages[1].id),
                    reader.clear("s"),
                    reader.prune(timedelta(microseconds=1)),
                ]
                for write in writes:
                    with pytest.raises(ConfigurationError, match="SELECT"):
                        await write
            assert await owner.count_messages("s") == 6
        finally:
            await _drop_role(admin, role, table_names)
    finally:
        async with admin.begin() as conn:
            await conn.run_sync(tables_for(private_prefix).metadata.drop_all)
        await admin.dispose()
        await owner.aclose()


# -- costs --------------------------------------------------------------------------------------


async def test_append_to_a_stored_session_is_two_statements(
    make_provider: Callable[..., SQLChatHistoryProvider], session_id: str
) -> None:
    """Appending new messages is the session upsert (which also sets `updated_at`) and one
    insert: the session times add no round trip."""
    provider = make_provider()
    await provider.add_messages(session_id, make_messages(2))
    sent: list[str] = []
    event.listen(
        provider.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: sent.append(statement),
    )
    try:
        await provider.add_messages(session_id, make_messages(3, text="more"))
        assert len(sent) == 2, sent
    finally:
        await provider.clear(session_id)


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("list_page", "sqlite_autoindex_memweave_sessions_1"),
        ("page_after", "memweave_messages_session_key"),
        ("page_before", "memweave_messages_session_key"),
        ("stale", "memweave_sessions_updated"),
    ],
)
def test_sqlite_pages_and_prune_walk_an_index(tmp_path: Path, statement: str, index: str) -> None:
    """Session pages, message pages and prune's batches search an index in its order, so
    they cost their page, not the table."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    tables = tables_for("memweave_")
    tables.metadata.create_all(engine)
    statements = build_statements(tables, engine.dialect)
    built = (
        statements.list_page("gt", True, True)
        if statement == "list_page"
        else getattr(statements, statement)
    )
    values = {"lo": "a", "hi": "b", "limit": 5, "sid": "s", "cursor": "c", "cutoff": 1.0}
    compiled = built.compile(dialect=engine.dialect)
    params = tuple({**compiled.params, **values}[name] for name in compiled.positiontup or [])
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    engine.dispose()
    plan = " ".join(str(row[-1]) for row in rows)
    assert index in plan
    assert "TEMP B-TREE" not in plan
