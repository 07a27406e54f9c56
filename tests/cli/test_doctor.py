"""`memweave doctor URL`: one line per finding with its fix, `--json`, and the exit status.

The Redis servers are throwaway `redis-server` processes on free loopback ports, started
with the settings under test and stopped by pid (`tests._redis_servers`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from memweave import ChatMessage
from memweave.cli.doctor import CANNOT_CHECK, FOUND
from memweave.providers.sql import SQLChatHistoryProvider
from tests._redis_servers import durable_redis_url, free_port, unsafe_redis_url
from tests.cli._helpers import Result, run_subprocess

__all__ = ["durable_redis_url", "unsafe_redis_url"]

_SEVERITIES = ("ERROR ", "WARNING ", "INFO ")


@pytest.fixture
def memweave_db(tmp_path: Path) -> str:
    """URL of a SQLite file memweave wrote (WAL mode)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"

    async def store() -> None:
        async with SQLChatHistoryProvider(url) as history:
            await history.add_messages("s", [ChatMessage.user("hi")])

    asyncio.run(store())
    return url


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    """URL of a SQLite file memweave wrote under namespace `app` (tables `app_messages`, ...)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"

    async def store() -> None:
        async with SQLChatHistoryProvider(url, namespace="app") as history:
            await history.add_messages("s", [ChatMessage.user("hi")])

    asyncio.run(store())
    return url


@pytest.fixture
def rollback_db(tmp_path: Path) -> str:
    """URL of a SQLite file in journal_mode=DELETE."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("CREATE TABLE t (x)")
    return f"sqlite+aiosqlite:///{path}"


def _finding_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(_SEVERITIES)]


def test_doctor_clean_backend_exits_0(cli: Callable[..., Result], memweave_db: str) -> None:
    """A backend with no errors or warnings exits 0 (notes are still printed)."""
    result = cli("doctor", memweave_db)
    assert result.code == 0, result.err
    assert [line.split()[0] for line in _finding_lines(result.out)] == ["INFO"]
    assert "0 errors, 0 warnings, 1 note" in result.out


def test_doctor_risky_setting_exits_1_with_one_line_and_fix(
    cli: Callable[..., Result], rollback_db: str
) -> None:
    """A risky setting exits 1 and is one line naming setting, value and fix."""
    result = cli("doctor", rollback_db)
    assert result.code == FOUND
    [line] = [line for line in _finding_lines(result.out) if line.startswith("WARNING")]
    assert line.startswith("WARNING journal_mode = delete")
    assert "Fix: " in line
    assert "PRAGMA journal_mode=WAL" in line


def test_doctor_redis_persistence_off_and_eviction_exit_1(
    cli: Callable[..., Result], unsafe_redis_url: str
) -> None:
    """Redis without persistence and with allkeys-lru: two error lines, exit 1."""
    result = cli("doctor", unsafe_redis_url)
    assert result.code == FOUND
    errors = [line for line in _finding_lines(result.out) if line.startswith("ERROR")]
    assert len(errors) == 2
    assert any("appendonly" in line for line in errors)
    assert any("maxmemory-policy = allkeys-lru" in line for line in errors)


def test_doctor_durable_redis_exits_0(cli: Callable[..., Result], durable_redis_url: str) -> None:
    """Redis with AOF every second and noeviction passes, with a note on appendfsync."""
    result = cli("doctor", durable_redis_url)
    assert result.code == 0, result.out
    assert [line.split()[1] for line in _finding_lines(result.out)] == ["appendfsync"]


def test_doctor_json_prints_the_diagnosis(cli: Callable[..., Result], rollback_db: str) -> None:
    """`--json` prints one object with the findings, `ok` and `durable`."""
    result = cli("doctor", rollback_db, "--json")
    assert result.code == FOUND
    printed = json.loads(result.out)
    assert (printed["backend"], printed["ok"], printed["durable"]) == ("sqlite", False, False)
    settings = {finding["setting"] for finding in printed["findings"]}
    assert "journal_mode" in settings
    assert {"severity", "concern", "found", "why", "fix", "where"} <= set(printed["findings"][0])


def test_doctor_unreachable_backend_exits_3_with_password_masked(
    cli: Callable[..., Result],
) -> None:
    """A server that does not answer exits 3 with one line on stderr, password masked."""
    result = cli("doctor", f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0", "--timeout", "5")
    assert result.code == CANNOT_CHECK
    assert "cannot check" in result.err
    assert "s3cret-pw" not in result.err + result.out
    assert result.out == ""


def test_doctor_unknown_scheme_exits_3(cli: Callable[..., Result]) -> None:
    """A URL no backend takes cannot be checked: exit 3, the reason on stderr."""
    result = cli("doctor", "ftp://example.org/x")
    assert result.code == CANNOT_CHECK
    assert "unsupported URL scheme" in result.err


def test_doctor_bad_timeout_is_a_usage_error(cli: Callable[..., Result]) -> None:
    """A timeout that is not a positive number is a usage error (exit 2)."""
    result = cli("doctor", "memory://", "--timeout", "0")
    assert result.code == 2
    assert "positive number of seconds" in result.err


def test_doctor_runs_as_a_command() -> None:
    """`python -m memweave.cli doctor memory://` prints the finding and exits 1."""
    done = run_subprocess("doctor", "memory://")
    assert done.returncode == FOUND, done.stderr
    assert b"WARNING backend = in-memory" in done.stdout


def _settings(out: str) -> set[str]:
    return {finding["setting"] for finding in json.loads(out)["findings"]}


def test_doctor_namespace_checks_that_namespaces_tables(
    cli: Callable[..., Result], app_db: str
) -> None:
    """`--namespace app` finds the tables `app_*`; without it, the default `memweave_*`
    tables are missing and a note says which namespace to pass."""
    named = cli("doctor", app_db, "--namespace", "app", "--json")
    assert named.code == 0, named.err
    assert "tables" not in _settings(named.out)
    assert named.err == ""
    default = cli("doctor", app_db, "--json")
    [note] = [f for f in json.loads(default.out)["findings"] if f["setting"] == "tables"]
    assert note["found"] == "none named memweave_*"
    assert "--namespace" in note["fix"]


def test_doctor_table_prefix_still_works_with_a_warning(
    cli: Callable[..., Result], app_db: str
) -> None:
    """The deprecated `--table-prefix app_` checks what `--namespace app` does and says so
    on stderr."""
    result = cli("doctor", app_db, "--table-prefix", "app_", "--json")
    assert result.code == 0, result.err
    assert "tables" not in _settings(result.out)
    assert "--table-prefix is deprecated" in result.err
    assert "--namespace" in result.err


def test_doctor_help_shows_namespace_not_table_prefix(cli: Callable[..., Result]) -> None:
    """`doctor --help` lists `--namespace` and hides the deprecated `--table-prefix`."""
    result = cli("doctor", "--help")
    assert result.code == 0
    assert "--namespace NAME" in result.out
    assert "table-prefix" not in result.out


def test_doctor_namespace_and_table_prefix_together_is_a_usage_error(
    cli: Callable[..., Result], app_db: str
) -> None:
    """Passing both names of one option is a usage error (exit 2)."""
    result = cli("doctor", app_db, "--namespace", "app", "--table-prefix", "app_")
    assert result.code == 2
    assert "not allowed with" in result.err


def test_doctor_bad_namespace_exits_3(cli: Callable[..., Result], app_db: str) -> None:
    """A namespace that cannot name SQL tables cannot be checked: exit 3, naming the rule."""
    result = cli("doctor", app_db, "--namespace", "no-dashes")
    assert result.code == CANNOT_CHECK
    assert "namespace must be" in result.err
