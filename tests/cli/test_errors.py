"""Bad URLs, unreachable servers and missing files: one clear line, a non-zero exit, no secret."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memweave.cli._common import secrets_in
from tests.cli._helpers import Result, conversation, run_subprocess, seed

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
            "does not take option(s) 'colour' (from_url('redis://:***@127.0.0.1:1/0'",
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


def test_secrets_in_collects_passwords_and_password_like_query_values() -> None:
    """Passwords and `?password=`, `token`, `api_key`-like values are all secrets, as written
    and decoded, wherever the URL sits in an argument."""
    found = secrets_in(
        [
            "redis://127.0.0.1/0?db=0&password=s3cret-1",
            "--url=postgresql+asyncpg://me:s3cret-2@h/db",
            "http://h/v1?API_KEY=s3cret%2B3&model=x",
            "mysql+aiomysql://h/db?passwd=s3cret-4&pwd=s3cret-5&secret=s3cret-6&token=s3cret-7",
            "memory://",
            "chat.db",
        ]
    )
    assert {"s3cret-1", "s3cret-2", "s3cret+3", "s3cret%2B3"} <= found
    assert {f"s3cret-{n}" for n in range(4, 8)} <= found
    assert not found & {"0", "x", "h", "db", "me"}


def test_query_password_never_reaches_the_error(cli: Cli) -> None:
    """A password given as a query parameter is masked like one in the user part."""
    result = cli("sessions", "list", f"redis://127.0.0.1:1/0?password={SECRET}")
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert SECRET not in result.err + result.out


# -- the installed console script ---------------------------------------------------------------


def _console_script() -> str:
    beside = Path(sys.executable).parent / "memweave"
    found = str(beside) if beside.is_file() else shutil.which("memweave")
    if found is None:
        pytest.fail("the memweave console script is not installed: pip install -e '.[all]'")
    return found


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_console_script(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_console_script_prints_its_version() -> None:
    """`memweave --version` through the installed entry point."""
    from memweave import __version__

    completed = _run_script("--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"memweave {__version__}\n"


def test_console_script_lists_sessions_of_a_sqlite_file(tmp_path: Path) -> None:
    """`memweave sessions list` reads a SQLite file through the installed entry point."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    seed(url, {"alpha": conversation(), "beta": conversation()[:2]})
    completed = _run_script("sessions", "list", url)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "alpha\t7\nbeta\t2\n"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://host/db", "unsupported URL scheme 'foo'"),
        (f"redis://:{SECRET}@127.0.0.1:1/0", "backend unavailable at redis://:***@127.0.0.1:1/0"),
        (f"redis://127.0.0.1:1/0?password={SECRET}", "backend unavailable"),
    ],
)
def test_console_script_bad_url_is_one_line_without_traceback(url: str, expected: str) -> None:
    """A bad or unreachable URL: one line, exit status 1, no traceback, no password."""
    completed = _run_script("sessions", "list", url)
    assert completed.returncode == 1
    assert completed.stderr.startswith("memweave: error: ")
    assert len(completed.stderr.splitlines()) == 1, completed.stderr
    assert expected in completed.stderr
    assert "Traceback" not in completed.stderr
    assert SECRET not in completed.stderr + completed.stdout
