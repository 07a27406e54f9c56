"""What every `memweave` subcommand shares: the error type, consoles, and URL checks."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Iterable
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
    "CommandError",
    "backend_option",
    "display_url",
    "err_console",
    "open_history",
    "out_console",
    "positive_int",
    "progress_bar",
    "scrub",
    "secrets_in",
    "suite_module",
]


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


def suite_module(name: str) -> ModuleType:
    """Import `benchmarks.<name>`, a suite of the memweave source checkout.

    Raises:
        CommandError: There is no `benchmarks` package (memweave was installed from a wheel).
    """
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", f"benchmarks.{name}"):
            raise
        raise CommandError(
            f"the {name} benchmark is not available: memweave bench runs the benchmarks/ "
            "folder of a memweave source checkout (git clone, then pip install -e '.[all]')"
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
        options: Constructor options of the provider, e.g. `("prefix", "myapp")`.

    Raises:
        CommandError: The SQLite file (or, when writing, its folder) does not exist, or the
            provider does not take one of the options.
        ConfigurationError: The URL is not one `from_url` understands.
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
    kwargs = dict(options)
    if not kwargs:
        return from_url(url)
    try:
        return from_url(url, **kwargs)
    except TypeError as exc:
        # The constructor's own message names the option it did not expect.
        raise CommandError(f"bad option for {display_url(url)}: {exc}") from None
