"""`memweave doctor URL`: check a backend's server settings that can lose or corrupt history.

The checks are `memweave.providers.diagnose`'s; this module only prints them, one line per
finding with its fix (or one JSON object with `--json`), and picks the exit status:

- 0: no errors or warnings (notes may be printed);
- 1: at least one error or warning;
- 3: the backend could not be checked (unreachable, timed out, a bad URL, a missing driver).

Example:
    ```console
    $ memweave doctor redis://localhost:6379/0
    $ memweave doctor mysql+aiomysql://app@db/chat --namespace chat --json
    ```
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from rich.text import Text

from memweave._deprecation import REMOVED_IN
from memweave.cli._common import display_url, err_console, out_console, scrub, secrets_in
from memweave.errors import MemweaveError
from memweave.providers import Diagnosis, Finding, diagnose

__all__ = ["CANNOT_CHECK", "FOUND", "add_parser", "render_finding", "run_doctor"]

FOUND = 1
"""Exit status when at least one error or warning was found."""
CANNOT_CHECK = 3
"""Exit status when the backend could not be checked at all."""

_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `doctor` on the top-level parser."""
    parser = commands.add_parser(
        "doctor",
        help="check a backend's server settings that can lose or corrupt stored history",
        description="Check the settings of the backend at URL that can lose or corrupt "
        "stored conversations (persistence, eviction, character sets, journal modes, ...) and "
        "print one line per finding with its fix. Only reads; changes nothing. Exit status: "
        "0 no errors or warnings, 1 some found, 3 the backend could not be checked.",
    )
    parser.add_argument("url", metavar="URL", help="a backend URL, e.g. redis://localhost:6379/0")
    names = parser.add_mutually_exclusive_group()
    names.add_argument(
        "--namespace",
        metavar="NAME",
        help="the SQL provider's namespace, whose tables NAME_messages, ... are checked "
        "(default: memweave)",
    )
    # Deprecated name, hidden from --help; goes in 0.3.
    names.add_argument("--table-prefix", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=15.0,
        metavar="SECONDS",
        help="give up on the backend after this long (default: 15)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run_doctor)


async def run_doctor(args: argparse.Namespace) -> int:
    """Diagnose `args.url`, print the findings, and return the exit status."""
    secrets = secrets_in(getattr(args, "argv", [args.url]))
    if args.table_prefix is not None:
        err_console().print(
            f"memweave doctor: --table-prefix is deprecated and goes in memweave {REMOVED_IN}; "
            "use --namespace (--namespace app checks the tables --table-prefix app_ did)"
        )
    try:
        with warnings.catch_warnings():
            # Said above, in the command's terms.
            warnings.simplefilter("ignore", DeprecationWarning)
            diagnosis = await diagnose(
                args.url,
                namespace=args.namespace,
                table_prefix=args.table_prefix,
                timeout=args.timeout,
            )
    except MemweaveError as exc:
        message = " ".join(str(exc).split())
        err_console().print(
            scrub(f"memweave doctor: cannot check {display_url(args.url)}: {message}", secrets)
        )
        return CANNOT_CHECK
    if args.json:
        text = json.dumps(diagnosis.model_dump(mode="json"), indent=2, ensure_ascii=False)
        sys.stdout.write(scrub(text, secrets) + "\n")
    else:
        _print(diagnosis, secrets)
    return 0 if diagnosis.ok else FOUND


def _print(diagnosis: Diagnosis, secrets: set[str]) -> None:
    console = out_console()
    server = f" ({diagnosis.server})" if diagnosis.server else ""
    console.print(scrub(f"{diagnosis.url}: {diagnosis.backend}{server}", secrets))
    for finding in diagnosis.findings:
        console.print(render_finding(finding))
    counts = {
        severity: sum(1 for f in diagnosis.findings if f.severity == severity)
        for severity in ("error", "warning", "info")
    }
    if not diagnosis.findings:
        console.print("no problems found")
    else:
        console.print(
            f"{_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}, "
            f"{_plural(counts['info'], 'note')}"
        )


def render_finding(finding: Finding) -> Text:
    """One finding as one line: severity, setting = value [where]: why. Fix: how."""
    line = Text()
    line.append(f"{finding.severity.upper():<7}", style=_STYLES[finding.severity])
    line.append(f" {finding.setting} = {finding.found}", style="bold")
    if finding.where:
        line.append(f" [{finding.where}]")
    line.append(f": {finding.why}. Fix: {finding.fix}")
    return line


def _seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
