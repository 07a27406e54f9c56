"""Where a store given no URL keeps its data: `memweave.db` (SQL) or the folder `chroma`
(Chroma history) in memweave's per-user data directory, never the working directory."""

from __future__ import annotations

import logging
import sqlite3
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from memweave import ChatMessage
from memweave.errors import ConfigurationError
from memweave.orchestration import SQLCheckpointStore
from memweave.orchestration.checkpoints import Checkpoint
from memweave.providers import data_dir
from memweave.providers.chroma import ChromaChatHistoryProvider
from memweave.providers.sql import SQLChatHistoryProvider
from tests.context.conftest import HashEmbeddings


def entries(folder: Path) -> list[str]:
    """The names in `folder`."""
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, made the current one."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


async def test_no_url_stores_under_memweave_home_not_the_working_directory(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With neither `url` nor `client`, histories and checkpoints share `memweave.db` in
    `$MEMWEAVE_HOME` (created, mode 0700, its path logged at INFO); the working directory
    stays empty."""
    home = tmp_path / "home" / "nested"
    monkeypatch.setenv("MEMWEAVE_HOME", str(home))
    saved = Checkpoint(workflow="w", session_id="s", status="idle", current_agent="a")
    with caplog.at_level(logging.INFO, logger="memweave"):
        async with SQLChatHistoryProvider() as history, SQLCheckpointStore() as store:
            await history.add_messages("s", [ChatMessage.user("hi")])
            await store.save_checkpoint(saved)
    assert entries(work) == []
    assert (home / "memweave.db").is_file()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert str(home / "memweave.db") in caplog.text
    with sqlite3.connect(home / "memweave.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"memweave_messages", "memweave_checkpoints"} <= tables
    async with SQLChatHistoryProvider() as again, SQLCheckpointStore() as store_again:
        assert await again.count_messages("s") == 1
        assert await store_again.get_checkpoint("w", "s") == saved


async def test_memweave_home_may_hold_url_characters(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory whose path holds `?`, `#`, `%` or spaces is used as it is."""
    home = tmp_path / "odd ?name #1 %20"
    monkeypatch.setenv("MEMWEAVE_HOME", str(home))
    async with SQLChatHistoryProvider() as history:
        await history.add_messages("s", [ChatMessage.user("hi")])
        assert history.engine.url.database == str(home / "memweave.db")
    assert (home / "memweave.db").is_file()
    assert entries(work) == []


def test_relative_memweave_home_is_taken_from_the_working_directory(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative `$MEMWEAVE_HOME` is made absolute once, against the working directory."""
    monkeypatch.setenv("MEMWEAVE_HOME", "data")
    assert data_dir() == work / "data"


def test_without_memweave_home_the_platform_data_directory_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset or empty, `$MEMWEAVE_HOME` gives way to platformdirs' user data directory for
    memweave (`$XDG_DATA_HOME/memweave` on Linux)."""
    import platformdirs

    monkeypatch.setenv("MEMWEAVE_HOME", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    expected = platformdirs.user_data_path("memweave", appauthor=False)
    if sys.platform == "linux":
        assert expected == tmp_path / "xdg" / "memweave"
    assert data_dir() == expected
    monkeypatch.delenv("MEMWEAVE_HOME")
    assert data_dir() == expected


@pytest.mark.parametrize(
    "make",
    [SQLChatHistoryProvider, lambda: ChromaChatHistoryProvider(embedder=HashEmbeddings())],
    ids=["sql", "chroma"],
)
def test_an_unusable_data_directory_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[], object]
) -> None:
    """A store given no URL names the data directory it cannot create, and the way out."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MEMWEAVE_HOME", str(blocker / "home"))
    with pytest.raises(ConfigurationError, match="MEMWEAVE_HOME") as raised:
        make()
    assert str(blocker / "home") in str(raised.value)


def test_default_url_replaces_the_deprecated_constant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`default_url()` names the file; the old `DEFAULT_URL` warns and says the same."""
    from memweave.providers import sql

    monkeypatch.setenv("MEMWEAVE_HOME", str(tmp_path / "home"))
    assert make_url(sql.default_url()).database == str(tmp_path / "home" / "memweave.db")
    with pytest.warns(DeprecationWarning, match="default_url"):
        assert sql.default_url() == sql.DEFAULT_URL


async def test_chroma_without_url_stores_under_memweave_home_not_the_working_directory(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With neither `url` nor `client`, a Chroma history keeps its embedded folder `chroma`
    in `$MEMWEAVE_HOME` (created, mode 0700, its path logged at INFO), even when that path
    holds URL characters; the working directory stays empty."""
    home = tmp_path / "odd ?home #1 %20"
    monkeypatch.setenv("MEMWEAVE_HOME", str(home))
    with caplog.at_level(logging.INFO, logger="memweave"):
        async with ChromaChatHistoryProvider(embedder=HashEmbeddings()) as history:
            await history.add_messages("s", [ChatMessage.user("hi")])
    assert entries(work) == []
    assert entries(home) == ["chroma"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert str(home / "chroma") in caplog.text
    async with ChromaChatHistoryProvider(embedder=HashEmbeddings()) as again:
        assert await again.count_messages("s") == 1
