"""Bad URLs, unreachable servers and missing files: one clear line, a non-zero exit, no secret."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._helpers import Result, run_subprocess

Cli = Callable[..., Result]

SECRET = "hunter2-s3cret"


def _cases(tmp: Path) -> list[tuple[list[str], str]]:
    sqlite_missing = f"sqlite+aiosqlite:///{tmp / 'missing.db'}"
    sqlite_new = f"sqlite+aiosqlite:///{tmp / 'new.db'}"
    return [
        (["sessions", "list", "foo://host/db"], "unsupported URL scheme 'foo'"),
        (["sessions", "list", "chat.db"], "not a URL: 'chat.db'"),
        (
            ["sessions", "list", f"redis://:{SECRET}@127.0.0.1:1/0"],
            "backend unavailable at redis://:***@127.0.0.1:1/0",
        ),
        (
            ["sessions", "show", f"postgresql+asyncpg://me:{SECRET}@127.0.0.1:1/db", "s1"],
            "backend unavailable at postgresql+asyncpg://me:***@127.0.0.1:1/db",
        ),
        (
            ["sessions", "export", f"mysql+aiomysql://me:{SECRET}@127.0.0.1:1/db"],
            "backend unavailable at mysql+aiomysql://me:***@127.0.0.1:1/db",
        ),
        (
            ["sessions", "migrate", sqlite_missing, f"redis://:{SECRET}@127.0.0.1:1/0"],
            f"no SQLite database at '{tmp / 'missing.db'}'",
        ),
        (
            ["sessions", "migrate", sqlite_new, f"redis://:{SECRET}@127.0.0.1:1/0"],
            "no SQLite database at",
        ),
        (["sessions", "export", sqlite_missing], "no SQLite database at"),
        (
            ["sessions", "import", f"sqlite+aiosqlite:///{tmp / 'no' / 'dir.db'}"],
            f"the folder '{tmp / 'no'}' of the SQLite database",
        ),
        (
            ["sessions", "import", sqlite_new, str(tmp / "missing.jsonl")],
            f"No such file or directory: '{tmp / 'missing.jsonl'}'",
        ),
        (
            ["sessions", "export", sqlite_missing, "-o", str(tmp / "no" / "out.jsonl")],
            "No such file or directory",
        ),
        (["bench", "retrieval", "--locomo", str(tmp / "missing.json")], "no LoCoMo file at"),
        (["sessions", "list", f"chroma://{tmp / 'nothing'}"], "no Chroma folder at"),
        (
            ["sessions", "list", f"redis://:{SECRET}@127.0.0.1:1/0", "-O", "colour=blue"],
            "bad option for redis://:***@127.0.0.1:1/0",
        ),
    ]


@pytest.mark.parametrize("index", range(14))
def test_failure_is_one_line_without_traceback_or_password(
    cli: Cli, tmp_path: Path, index: int
) -> None:
    """Each failure prints exactly one `memweave: error:` line and exits 1."""
    args, expected = _cases(tmp_path)[index]
    result = cli(*args)
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("memweave: error: ")
    assert expected in lines[0]
    assert SECRET not in result.err + result.out


def test_usage_error_is_one_line_with_exit_status_2(cli: Cli) -> None:
    """A missing argument names what is missing, in one line, and points to --help."""
    result = cli("sessions", "show", f"redis://:{SECRET}@localhost/0")
    assert result.code == 2
    assert result.err.splitlines() == [
        "memweave sessions show: error: the following arguments are required: SESSION "
        "(see 'memweave sessions show --help')"
    ]


def test_usage_error_masks_passwords(cli: Cli) -> None:
    """A URL echoed back by the argument parser has its password masked."""
    result = cli("sessions", "list", "memory://", f"redis://:{SECRET}@localhost/0")
    assert result.code == 2
    assert SECRET not in result.err
    assert "redis://:***@localhost/0" in result.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sessions", "list", f"redis://:{SECRET}@127.0.0.1:1/0"], "backend unavailable"),
        (
            ["sessions", "export", f"postgresql+asyncpg://me:{SECRET}@127.0.0.1:1/db"],
            "backend unavailable",
        ),
        (["sessions", "import", "memory://", "/nonexistent/file.jsonl"], "No such file"),
    ],
)
def test_subprocess_failure_is_one_line(args: list[str], expected: str) -> None:
    """In a real process too, nothing but the one line reaches stderr (no warnings at exit)."""
    completed = run_subprocess(*args)
    assert completed.returncode == 1
    err = completed.stderr.decode()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("memweave: error: ")
    assert expected in err
    assert SECRET not in err + completed.stdout.decode()


def test_missing_rich_names_the_extra_to_install() -> None:
    """Without rich, the command says which extra installs it, in one line."""
    code = (
        "import sys; sys.modules['rich'] = None; from memweave.cli import main; "
        "sys.exit(main(['sessions', 'list', 'memory://']))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 1
    assert completed.stderr == (
        "memweave: error: 'rich' is not installed; install it with: pip install 'memweave[cli]'\n"
    )
