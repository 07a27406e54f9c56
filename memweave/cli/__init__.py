"""The `memweave` command: `memweave sessions ...`, `memweave bench ...`, `memweave doctor URL`.

Every failure the user can cause or meet (a bad URL, an unreachable server, a missing file, a
malformed import line) ends as one line on standard error and a non-zero exit status, with any
password of a URL given on the command line masked. Exit status: 0 success, 1 failure, 2 a
usage error, 130 interrupted (`doctor`: 1 when it found a risky setting, 3 when it could not
check the backend).

Example:
    ```console
    $ memweave sessions list sqlite+aiosqlite:///chat.db
    $ memweave sessions migrate sqlite+aiosqlite:///chat.db redis://localhost:6379/0
    $ memweave bench all --out bench-results/today
    $ memweave doctor redis://localhost:6379/0
    $ memweave models fetch --from /path/to/models
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from memweave._urls import mask_url
from memweave.errors import MemweaveError, MissingDependency

__all__ = ["build_parser", "main"]

_PROG = "memweave"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        message = _URL.sub(lambda match: mask_url(match.group()), message)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `memweave` command and all its subcommands."""
    from memweave import __version__
    from memweave.cli import bench, doctor, models, sessions

    parser = _Parser(
        prog=_PROG,
        description="memweave: inspect and move stored conversations, and benchmark memory.",
    )
    parser.add_argument("--version", action="version", version=f"memweave {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sessions.add_parser(commands)
    bench.add_parser(commands)
    doctor.add_parser(commands)
    models.add_parser(commands)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, secrets: set[str]) -> int:
    from memweave.cli._common import scrub

    message = _URL.sub(lambda match: mask_url(match.group()), _one_line(message))
    sys.stderr.write(f"{_PROG}: error: {scrub(message, secrets)}\n")
    sys.stderr.flush()
    return 1


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {str(exc.filename)!r}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `memweave` command with `argv` (default: `sys.argv[1:]`); return the exit status.

    Args:
        argv: The arguments after the program name.

    Returns:
        0 on success, 1 when the command failed (one line on stderr says why), 2 on a usage
        error, 130 when interrupted.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        from memweave.cli._common import secrets_in

        parser = build_parser()
    except ImportError as exc:  # rich (extra `cli`) is the one dependency the command adds
        package = (exc.name or "rich").split(".")[0]
        sys.stderr.write(f"{_PROG}: error: {MissingDependency(package, 'cli')}\n")
        return 1
    secrets = secrets_in(args_list)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = args_list
    try:
        status: int = asyncio.run(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write(f"{_PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly, and keep Python from complaining
        # about the unflushable stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except MemweaveError as exc:
        return _fail(str(exc), secrets)
    except OSError as exc:
        return _fail(_describe_os_error(exc), secrets)
    except Exception as exc:
        if args.debug:
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            secrets,
        )
    return status
