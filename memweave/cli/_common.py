"""What every `memweave` subcommand shares: the error type, consoles, and URL checks."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from memweave._urls import SECRET_QUERY_KEYS, mask_url
from memweave.errors import MemweaveError
from memweave.providers import ChatHistoryProvider, from_url

__all__ = [
    "MAX_PAGE_SIZE",
    "SESSION_PAGE",
    "CommandError",
    "InvalidDuration",
    "add_backend_options",
    "backend_option",
    "display_url",
    "duration",
    "err_console",
    "open_history",
    "out_console",
    "page_size",
    "parse_duration",
    "positive_int",
    "progress_bar",
    "scrub",
    "secrets_in",
    "session_pages",
    "suite_module",
]

MAX_PAGE_SIZE = 10_000
"""The largest page `iter_messages` reads at once."""

SESSION_PAGE = 1000
"""Session ids listed per `list_sessions` call when a command walks every session."""


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
"""A URL inside an argument or a message."""


class CommandError(MemweaveError):
    """A command cannot go on; its message is the one line shown to the user."""


def out_console() -> Console:
    """A console on the current `sys.stdout` (looked up now, so tests can capture it)."""
    terminal = sys.stdout.isatty()
    return Console(
        file=sys.stdout, soft_wrap=not terminal, highlight=False, markup=False, emoji=False
    )


def err_console() -> Console:
    """A console on the current `sys.stderr`, for progress, prompts and summaries."""
    return Console(file=sys.stderr, soft_wrap=True, highlight=False, markup=False, emoji=False)


_EXTRA_OF_MODULE = {
    "chromadb": "chroma",
    "onnxruntime": "chroma",
    "tokenizers": "chroma",
    "numpy": "chroma",
    "tiktoken": "tokens",
    "redis": "redis",
    "asyncpg": "postgres",
    "aiomysql": "mysql",
    "matplotlib": "cli",
    "rich": "cli",
    "nltk": "cli",
}


def suite_module(name: str) -> ModuleType:
    """Import the benchmark suite `memweave.bench.<name>` (shipped in the wheel).

    Raises:
        CommandError: A package the suite needs is not installed; names the extra to add.
    """
    try:
        return importlib.import_module(f"memweave.bench.{name}")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing == "memweave":
            raise
        extra = _EXTRA_OF_MODULE.get(missing, "all")
        raise CommandError(
            f"the {name} benchmark needs the {missing!r} package, which is not installed: "
            f"pip install 'memweave[cli,{extra}]'"
        ) from None


def progress_bar(console: Console, unit: str = "") -> Progress:
    """A progress bar on `console`, counting `unit`s; silent when `console` is not a terminal
    (logs, pipes, tests)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def positive_int(text: str) -> int:
    """argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def page_size(text: str) -> int:
    """argparse type: a page size, a positive integer up to `MAX_PAGE_SIZE`."""
    value = positive_int(text)
    if value > MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected a page size from 1 to {MAX_PAGE_SIZE:,}, got {text!r}"
        )
    return value


_DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION_PART = re.compile(r"([0-9]+)([a-zA-Z]*)")
_DURATION_FORMS = "a whole number and a unit, e.g. 30d, 12h, 90m, 45s, 2w, or parts like 1d12h"


class InvalidDuration(CommandError, ValueError):
    """A duration given on the command line cannot be read.

    Attributes:
        text: The rejected text.
        reason: Which rule it broke.
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid duration {text!r}: {reason}")


def parse_duration(text: str) -> timedelta:
    """Read a duration: whole numbers each followed by a unit, `w` (weeks), `d` (days), `h`
    (hours), `m` (minutes) or `s` (seconds), e.g. `30d`, `12h` or `1d12h`.

    Each unit may appear once; there are no months or years (their length varies: write
    days). The duration must be longer than zero.

    Raises:
        InvalidDuration: `text` is not such a duration; the message says why.
    """
    parts: dict[str, int] = {}
    position = 0
    if not text:
        raise InvalidDuration(text, f"expected {_DURATION_FORMS}")
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise InvalidDuration(text, f"expected {_DURATION_FORMS}")
        number, unit = match.groups()
        if not unit and match.end() < len(text):
            raise InvalidDuration(text, f"expected {_DURATION_FORMS}")
        if not unit:
            raise InvalidDuration(
                text, f"{number!r} has no unit: write {number}d for days, {number}s for seconds"
            )
        if unit not in _DURATION_UNITS:
            units = ", ".join(f"{key} ({name})" for key, name in _DURATION_UNITS.items())
            raise InvalidDuration(text, f"unknown unit {unit!r}; the units are {units}")
        if unit in parts:
            raise InvalidDuration(text, f"the unit {unit!r} appears twice")
        parts[unit] = int(number)
        position = match.end()
    try:
        value = timedelta(**{_DURATION_UNITS[unit]: n for unit, n in parts.items()})
    except OverflowError:
        raise InvalidDuration(text, "is longer than Python can represent") from None
    if value <= timedelta(0):
        raise InvalidDuration(text, "must be longer than zero")
    return value


def duration(text: str) -> timedelta:
    """argparse type: a duration as `parse_duration` reads it."""
    try:
        return parse_duration(text.strip())
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add `-O/--option KEY=VALUE` (provider options, repeatable) to a subcommand."""
    parser.add_argument(
        "-O",
        "--option",
        dest="options",
        action="append",
        type=backend_option,
        default=[],
        metavar="KEY=VALUE",
        help="a provider option, repeatable (e.g. -O namespace=myapp)",
    )


async def session_pages(
    history: ChatHistoryProvider,
    prefix: str | None,
    *,
    after: str | None = None,
    limit: int | None = None,
) -> AsyncIterator[list[str]]:
    """Yield the ids of the live sessions, sorted, one `list_sessions` page at a time.

    Args:
        history: The provider to list.
        prefix: Only ids starting with this exact text.
        after: Only ids sorting after this one.
        limit: At most this many ids in all (None: every one).
    """
    left = limit
    while left is None or left > 0:
        size = SESSION_PAGE if left is None else min(left, SESSION_PAGE)
        page = await history.list_sessions(prefix, limit=size, after=after)
        if not page:
            return
        yield page
        if left is not None:
            left -= len(page)
        if len(page) < size:
            return
        after = page[-1]


def _query_secrets(query: str) -> set[str]:
    found: set[str] = set()
    for piece in query.split("&"):
        key, equals, value = piece.partition("=")
        if equals and value and unquote_plus(key).lower() in SECRET_QUERY_KEYS:
            found.update({value, unquote(value), unquote_plus(value)})
    return found


def secrets_in(args: Iterable[str]) -> set[str]:
    """The secrets held by the URLs among `args`, as written and percent-decoded: passwords,
    and the values of password-like query parameters (`?password=`, `token`, `api_key`, ...).

    A URL counts wherever it sits in an argument, so `--url=redis://:pw@host` is found too.
    """
    found: set[str] = set()
    for arg in args:
        # Each URL to its first space or quote, and to the end of the argument: a password
        # may hold a space or a quote.
        matches = list(_URL.finditer(arg))
        urls = [m.group() for m in matches] + [arg[m.start() :] for m in matches]
        for url in urls:
            try:
                parts = urlsplit(url)
                password = parts.password
            except ValueError:
                continue
            if password:
                found.update({password, unquote(password)})
            found |= _query_secrets(parts.query)
    # An empty or one-character "secret" would scrub half the output; none is that short.
    return {secret for secret in found if len(secret) > 1}


def display_url(url: str) -> str:
    """`url` as the command shows it: password and secret query values replaced by `***`."""
    return scrub(mask_url(url), secrets_in([url]))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` by `***`; the last guard before anything is printed."""
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names, or None for an in-memory database or another scheme."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+", 1)[0] != "sqlite":
        return None
    # sqlite:///relative.db and sqlite:////absolute.db; query options follow a '?'.
    path = rest.removeprefix("/").split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(unquote(path))


def backend_option(text: str) -> tuple[str, Any]:
    """argparse type: `KEY=VALUE`, a provider option; VALUE is read as JSON when it parses."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _chroma_path(url: str) -> Path | None:
    """The folder an embedded-Chroma URL names (`chroma:///path`, `chroma://./rel`), else None."""
    if url.split("://", 1)[0].lower() != "chroma":
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    path = parts.netloc + parts.path
    return Path(unquote(path)) if path else None


def open_history(
    url: str, *, must_exist: bool, options: Iterable[tuple[str, Any]] = ()
) -> ChatHistoryProvider:
    """Build the provider `url` names, first checking that a SQLite file is where it says.

    Args:
        url: A URL `memweave.from_url` understands.
        must_exist: True when the command only reads: a missing SQLite file is then an error
            instead of an empty database created on the spot.
        options: Constructor options of the provider, e.g. `("namespace", "myapp")`.

    Raises:
        CommandError: The SQLite file (or, when writing, its folder) does not exist.
        ConfigurationError: The URL is not one `from_url` understands, or its provider does
            not take one of the options (the message lists those it takes).
    """
    path = _sqlite_path(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise CommandError(f"no SQLite database at {str(path)!r} (from {display_url(url)})")
        if not path.parent.is_dir():
            raise CommandError(
                f"the folder {str(path.parent)!r} of the SQLite database {display_url(url)} "
                "does not exist"
            )
    folder = _chroma_path(url)
    if folder is not None and must_exist and not folder.is_dir():
        raise CommandError(f"no Chroma folder at {str(folder)!r} (from {display_url(url)})")
    return from_url(url, **dict(options))
