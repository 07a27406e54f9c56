"""`diagnose` on SQLite files, the shared PostgreSQL and the shared MariaDB.

Server settings are only read; tables a test needs (UNLOGGED, latin1, MyISAM) are created
under a namespace no other test uses and dropped after it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memweave import ChatMessage
from memweave.providers import Diagnosis, Finding, diagnose
from memweave.providers._limits import mysql_limit
from memweave.providers.sql import SQLChatHistoryProvider
from tests.conformance._harness_sql import mysql_url, postgres_url

__all__ = ["mysql_url", "postgres_url"]

_ROOT = Path(__file__).resolve().parents[2]
_TABLE_SETTINGS = {"ENGINE", "TABLE_COLLATION", "CHARACTER_SET_NAME", "COLLATION_NAME"}


def _setting(diagnosis: Diagnosis, setting: str) -> list[Finding]:
    return [finding for finding in diagnosis.findings if finding.setting == setting]


def _namespace() -> str:
    return f"mwd{uuid.uuid4().hex[:10]}"


async def _store_one(url: str, namespace: str = "memweave") -> None:
    async with SQLChatHistoryProvider(url, namespace=namespace) as history:
        await history.add_messages("s", [ChatMessage.user("hi")])


async def _drop(url: str, namespace: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("messages", "sessions", "schema"):
                await conn.execute(text(f"DROP TABLE IF EXISTS {namespace}_{table}"))
    finally:
        await engine.dispose()


# -- SQLite ---------------------------------------------------------------------------------------


async def test_diagnose_sqlite_memweave_file_is_ok(tmp_path: Path) -> None:
    """A file memweave wrote (WAL, synchronous=NORMAL) has no problems, only a note."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    await _store_one(url)
    diagnosis = await diagnose(url)
    assert diagnosis.ok
    assert diagnosis.durable
    assert [(f.setting, f.severity) for f in diagnosis.findings] == [("synchronous", "info")]


async def test_diagnose_sqlite_reports_rollback_journal_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A file in journal_mode=DELETE is a durability warning, and stays in DELETE mode."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("CREATE TABLE t (x)")
    diagnosis = await diagnose(f"sqlite+aiosqlite:///{path}")
    [finding] = _setting(diagnosis, "journal_mode")
    assert (finding.severity, finding.concern, finding.found) == ("warning", "durability", "delete")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


async def test_diagnose_sqlite_synchronous_off_through_engine_is_an_error(tmp_path: Path) -> None:
    """A caller's engine that turns synchronous OFF is an error (corruption on power loss)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'fast.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _unsafe(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    try:
        diagnosis = await diagnose(client=engine)
    finally:
        await engine.dispose()
    [finding] = _setting(diagnosis, "synchronous")
    assert (finding.severity, finding.found) == ("error", "OFF")
    assert _setting(diagnosis, "journal_mode") == []


async def test_diagnose_sqlite_missing_folder_is_an_error(tmp_path: Path) -> None:
    """A database in a folder that does not exist cannot be created: an access error."""
    folder = tmp_path / "missing"
    diagnosis = await diagnose(f"sqlite+aiosqlite:///{folder / 'chat.db'}")
    [finding] = _setting(diagnosis, "folder")
    assert (finding.severity, finding.concern) == ("error", "access")
    assert not folder.exists()


async def test_diagnose_sqlite_in_memory_is_not_durable() -> None:
    """An in-memory SQLite database is reported as ending with the process."""
    diagnosis = await diagnose("sqlite+aiosqlite://")
    assert not diagnosis.durable
    assert [f.found for f in diagnosis.findings] == [":memory:"]


async def test_diagnose_sqlite_not_a_database_is_an_error(tmp_path: Path) -> None:
    """A file SQLite cannot open is an access error, not a crash."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    diagnosis = await diagnose(f"sqlite+aiosqlite:///{path}")
    [finding] = _setting(diagnosis, "file")
    assert (finding.severity, finding.concern) == ("error", "access")


@pytest.fixture
def readonly_folder() -> Iterator[Path]:
    """A folder holding a database, that the user running the check may not write."""
    folder = Path(tempfile.mkdtemp(prefix="memweave-doctor-"))
    with sqlite3.connect(folder / "chat.db") as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE memweave_messages (x)")
    (folder / "chat.db").chmod(0o644)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_diagnose_sqlite_unwritable_folder_is_an_error(readonly_folder: Path) -> None:
    """A folder the process cannot write (no -wal/-shm files, no writes) is an access error."""
    script = (
        "import asyncio, sys; from memweave.providers import diagnose; "
        "print(asyncio.run(diagnose(sys.argv[1])).model_dump_json())"
    )
    # root may write anywhere, so the check runs as an unprivileged user when we are root.
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    command = [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", script]
    done = subprocess.run(
        [*command, f"sqlite+aiosqlite:///{readonly_folder / 'chat.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout)["findings"]
    where = {f["where"] for f in findings if f["setting"] == "permissions"}
    assert str(readonly_folder) in where


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
async def postgres_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the shared PostgreSQL, disposed of after the test."""
    engine = create_async_engine(postgres_url)
    yield engine
    await engine.dispose()


async def test_diagnose_postgres_reports_exactly_the_unsafe_settings(
    postgres_url: str, postgres_engine: AsyncEngine
) -> None:
    """fsync, full_page_writes and synchronous_commit are findings exactly when off."""
    names = ("fsync", "full_page_writes", "synchronous_commit")
    async with postgres_engine.connect() as conn:
        off = {
            name for name in names if (await conn.execute(text(f"SHOW {name}"))).scalar() == "off"
        }
    diagnosis = await diagnose(postgres_url)
    assert {f.setting for f in diagnosis.findings if f.setting in names} == off
    assert diagnosis.backend == "postgresql"


async def test_diagnose_postgres_connection_synchronous_commit_off_is_a_warning(
    postgres_url: str,
) -> None:
    """`synchronous_commit=off` set by the client's connection settings is found."""
    engine = create_async_engine(
        postgres_url, connect_args={"server_settings": {"synchronous_commit": "off"}}
    )
    try:
        diagnosis = await diagnose(client=engine)
    finally:
        await engine.dispose()
    [finding] = _setting(diagnosis, "synchronous_commit")
    assert (finding.severity, finding.found) == ("warning", "off (from client)")
    assert not diagnosis.durable


async def test_diagnose_postgres_unlogged_table_is_an_error(
    postgres_url: str, postgres_engine: AsyncEngine
) -> None:
    """A memweave table created UNLOGGED (emptied after a crash) is an error."""
    namespace = _namespace()
    async with postgres_engine.begin() as conn:
        await conn.execute(text(f"CREATE UNLOGGED TABLE {namespace}_messages (id BIGINT)"))
    try:
        diagnosis = await diagnose(postgres_url, namespace=namespace)
    finally:
        await _drop(postgres_url, namespace)
    [finding] = _setting(diagnosis, "relpersistence")
    assert (finding.severity, finding.where) == ("error", f"{namespace}_messages")


async def test_diagnose_postgres_memweave_tables_have_no_table_findings(postgres_url: str) -> None:
    """Tables memweave created are found, and none of them is a finding."""
    namespace = _namespace()
    await _store_one(postgres_url, namespace)
    try:
        diagnosis = await diagnose(postgres_url, namespace=namespace)
    finally:
        await _drop(postgres_url, namespace)
    assert [f for f in diagnosis.findings if f.setting in ("relpersistence", "tables")] == []


# -- MariaDB / MySQL ------------------------------------------------------------------------------


async def test_diagnose_mysql_memweave_tables_have_no_table_findings(mysql_url: str) -> None:
    """Tables memweave created (InnoDB, utf8mb4, binary NO PAD ids) are not findings."""
    namespace = _namespace()
    await _store_one(mysql_url, namespace)
    try:
        diagnosis = await diagnose(mysql_url, namespace=namespace)
    finally:
        await _drop(mysql_url, namespace)
    assert [f for f in diagnosis.findings if f.setting in _TABLE_SETTINGS | {"tables"}] == []
    assert diagnosis.backend in ("mariadb", "mysql")


@pytest.fixture
async def bad_mysql_tables(mysql_url: str) -> AsyncIterator[str]:
    """Tables of a fresh namespace: messages latin1 on MyISAM, sessions with a
    case-insensitive id; yields the namespace and drops them after."""
    namespace = _namespace()
    engine = create_async_engine(mysql_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    f"CREATE TABLE {namespace}_messages (id BIGINT PRIMARY KEY, "
                    "session_id VARCHAR(256) NOT NULL, message_id VARCHAR(256) NOT NULL, "
                    "data LONGBLOB) ENGINE=MyISAM CHARACTER SET latin1"
                )
            )
            await conn.execute(
                text(
                    f"CREATE TABLE {namespace}_sessions (session_id VARCHAR(256) CHARACTER SET "
                    "utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY) ENGINE=InnoDB "
                    "CHARACTER SET utf8mb4"
                )
            )
    finally:
        await engine.dispose()
    try:
        yield namespace
    finally:
        await _drop(mysql_url, namespace)


async def test_diagnose_mysql_non_transactional_engine_is_an_error(
    mysql_url: str, bad_mysql_tables: str
) -> None:
    """A memweave table on MyISAM (no transactions) is an error naming the table."""
    diagnosis = await diagnose(mysql_url, namespace=bad_mysql_tables)
    [finding] = _setting(diagnosis, "ENGINE")
    assert (finding.severity, finding.found) == ("error", "MyISAM")
    assert finding.where == f"{bad_mysql_tables}_messages"


async def test_diagnose_mysql_non_utf8mb4_columns_are_errors(
    mysql_url: str, bad_mysql_tables: str
) -> None:
    """Each latin1 text column is an encoding error, and the table's default a warning."""
    diagnosis = await diagnose(mysql_url, namespace=bad_mysql_tables)
    columns = _setting(diagnosis, "CHARACTER_SET_NAME")
    table = f"{bad_mysql_tables}_messages"
    assert {f.where for f in columns} == {f"{table}.session_id", f"{table}.message_id"}
    assert {(f.severity, f.found) for f in columns} == {("error", "latin1")}
    [default] = _setting(diagnosis, "TABLE_COLLATION")
    assert (default.severity, default.where) == ("warning", table)


async def test_diagnose_mysql_case_insensitive_id_is_an_error(
    mysql_url: str, bad_mysql_tables: str
) -> None:
    """An id column compared ignoring case ('Ab' = 'ab') is an encoding error."""
    diagnosis = await diagnose(mysql_url, namespace=bad_mysql_tables)
    [finding] = _setting(diagnosis, "COLLATION_NAME")
    assert (finding.severity, finding.found) == ("error", "utf8mb4_general_ci")
    assert finding.where == f"{bad_mysql_tables}_sessions.session_id"


async def test_diagnose_mysql_utf8_connection_is_an_error(mysql_url: str) -> None:
    """A connection talking utf8 (3-byte) is an error: emoji ids would collide."""
    engine = create_async_engine(f"{mysql_url}?charset=utf8")
    try:
        diagnosis = await diagnose(client=engine)
    finally:
        await engine.dispose()
    found = {f.setting: f for f in diagnosis.findings if f.concern == "encoding"}
    assert found["character_set_client"].severity == "error"
    assert found["character_set_client"].found.startswith("utf8")
    assert not diagnosis.ok


async def test_diagnose_mysql_reports_largest_message(mysql_url: str) -> None:
    """`max_allowed_packet` is reported with the largest message that fits (hex doubles it)."""
    engine = create_async_engine(mysql_url)
    try:
        async with engine.connect() as conn:
            packet = int((await conn.execute(text("SELECT @@max_allowed_packet"))).scalar() or 0)
    finally:
        await engine.dispose()
    diagnosis = await diagnose(mysql_url)
    [finding] = _setting(diagnosis, "max_allowed_packet")
    assert (finding.severity, finding.concern, finding.found) == ("info", "size", str(packet))
    assert f"{mysql_limit(packet):,} bytes" in finding.why


async def test_diagnose_mysql_reports_exactly_the_unsafe_flush(mysql_url: str) -> None:
    """innodb_flush_log_at_trx_commit is a finding exactly when it is not 1 (or 3)."""
    engine = create_async_engine(mysql_url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT @@innodb_flush_log_at_trx_commit")
            flush = str((await conn.execute(query)).scalar())
    finally:
        await engine.dispose()
    diagnosis = await diagnose(mysql_url)
    found = [f.found for f in _setting(diagnosis, "innodb_flush_log_at_trx_commit")]
    assert found == ([] if flush in ("1", "3") else [flush])
