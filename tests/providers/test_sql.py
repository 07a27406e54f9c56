"""Backend-only checks of `SQLChatHistoryProvider`: schema, indexes, engines, URLs, errors."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

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
from memweave.providers import from_url
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
def private_prefix() -> str:
    """A table prefix no other test uses, so a test may change or drop its tables."""
    return f"mwt{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def session_id() -> str:
    return f"mwt-sql-{uuid.uuid4().hex}"


# -- schema -------------------------------------------------------------------------------------


async def test_schema_version_row_is_written(
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """First use creates the tables and records the schema version."""
    provider = make_provider(table_prefix=private_prefix)
    await provider.count_messages("x")
    schema = tables_for(private_prefix).schema
    async with provider.engine.connect() as conn:
        rows = (await conn.execute(select(schema.c.name, schema.c.version))).all()
    assert [tuple(row) for row in rows] == [(SCHEMA_NAME, SCHEMA_VERSION)]


async def test_schema_version_mismatch_raises(
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """Tables recorded with another schema version raise `SchemaMismatch` on first use."""
    first = make_provider(table_prefix=private_prefix)
    await first.count_messages("x")
    schema = tables_for(private_prefix).schema
    async with first.engine.begin() as conn:
        await conn.execute(update(schema).values(version=SCHEMA_VERSION + 98))
    second = make_provider(table_prefix=private_prefix)
    with pytest.raises(SchemaMismatch) as info:
        await second.add_messages("x", [ChatMessage.user("hi")])
    assert info.value.found == SCHEMA_VERSION + 98
    assert info.value.expected == SCHEMA_VERSION


async def test_create_tables_false_without_tables_raises(
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """With `create_tables=False`, missing tables are a `ConfigurationError`, not a crash."""
    provider = make_provider(table_prefix=private_prefix, create_tables=False)
    with pytest.raises(ConfigurationError, match=f"{private_prefix}schema"):
        await provider.list_sessions()


async def test_create_tables_false_uses_migrated_tables(
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """Tables created from the public `MetaData` (as a migration would) are used as they are,
    and the version row is written on first use."""
    provider = make_provider(table_prefix=private_prefix, create_tables=False)
    async with provider.engine.begin() as conn:
        await conn.run_sync(build_metadata(private_prefix).create_all)
    await provider.add_messages("s", make_messages(2))
    assert texts(await provider.list_messages("s")) == texts(make_messages(2))


def test_metadata_is_public_for_migrations() -> None:
    """`metadata` and `build_metadata(prefix)` expose the tables, one object per prefix."""
    assert isinstance(metadata, MetaData)
    assert set(metadata.tables) == {"memweave_messages", "memweave_sessions", "memweave_schema"}
    custom = build_metadata("app_")
    assert set(custom.tables) == {"app_messages", "app_sessions", "app_schema"}
    assert build_metadata("app_") is custom
    provider = SQLChatHistoryProvider("sqlite+aiosqlite://", table_prefix="app_")
    assert provider.metadata is custom


@pytest.mark.parametrize("prefix", ["", "1abc", "bad-prefix", "a b", "x" * 33, "ü_"])
def test_bad_table_prefix_raises(prefix: str) -> None:
    """A table prefix must be a short SQL identifier, never quoted into statements."""
    with pytest.raises(ConfigurationError, match="table_prefix"):
        SQLChatHistoryProvider("sqlite+aiosqlite://", table_prefix=prefix)


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
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """`purge_expired()` reclaims expired sessions' rows and leaves live ones alone."""
    provider = make_provider(ttl=timedelta(hours=1), table_prefix=private_prefix)
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


def _append_with_prefix(url: str, prefix: str, worker: int, start_at: float) -> None:
    """Process entry point: append 20 messages to one session under a table prefix."""
    import asyncio
    import time

    async def run() -> None:
        async with SQLChatHistoryProvider(url, table_prefix=prefix) as history:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            for i in range(20):
                await history.add_messages("s", [ChatMessage.user(f"w{worker}-{i}")])

    asyncio.run(run())


async def test_first_use_from_many_processes_creates_tables_once(
    make_provider: Callable[..., SQLChatHistoryProvider], private_prefix: str
) -> None:
    """Processes that all find the tables missing at once each end up using the same ones."""
    import asyncio
    import multiprocessing
    import time

    provider = make_provider(table_prefix=private_prefix)
    url = provider.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    processes = [
        context.Process(target=_append_with_prefix, args=(url, private_prefix, w, start_at))
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
        async with SQLChatHistoryProvider(engine=engine) as provider:
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


def test_url_and_engine_together_raise() -> None:
    """Passing both `url` and `engine` is ambiguous."""
    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="either"):
        SQLChatHistoryProvider("sqlite+aiosqlite://", engine=engine)


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
