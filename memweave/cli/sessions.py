"""`memweave sessions ...`: list, show, export, import and delete stored conversations.

`migrate` lives in `memweave.cli._migrate`. Every command opens the backend a URL names with
`memweave.from_url`; URLs are shown with their password masked.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.table import Table
from rich.text import Text

from memweave.cli import _migrate
from memweave.cli._common import (
    CommandError,
    backend_option,
    display_url,
    err_console,
    open_history,
    out_console,
    positive_int,
)
from memweave.cli._records import RecordError, dump_record, read_records, to_record
from memweave.messages import ChatMessage

__all__ = [
    "ImportStopped",
    "add_parser",
    "delete_sessions",
    "export_sessions",
    "import_sessions",
    "list_sessions",
    "render_message",
    "show_session",
]

_ROLE_STYLES = {
    "system": "magenta",
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "yellow",
}


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `sessions` and its subcommands on the top-level parser."""
    parser = commands.add_parser(
        "sessions",
        help="inspect, export, import, delete and migrate stored conversations",
        description="Inspect, export, import, delete and migrate stored conversations.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    list_ = sub.add_parser("list", help="list the sessions stored at URL, with message counts")
    list_.add_argument("url", metavar="URL", help="a backend URL, e.g. sqlite+aiosqlite:///chat.db")
    list_.add_argument("--prefix", help="only session ids starting with this exact text")
    list_.add_argument("--json", action="store_true", help="print one JSON array")
    list_.set_defaults(func=list_sessions)

    show = sub.add_parser("show", help="print one conversation as a readable transcript")
    show.add_argument("url", metavar="URL")
    show.add_argument("session", metavar="SESSION")
    show.add_argument("--last", type=positive_int, metavar="N", help="only the newest N messages")
    show.add_argument(
        "--json", action="store_true", help="print export records (JSON Lines) instead"
    )
    show.set_defaults(func=show_session)

    export = sub.add_parser(
        "export", help="write every message as JSON Lines (one object per message)"
    )
    export.add_argument("url", metavar="URL")
    export.add_argument("--prefix", help="only session ids starting with this exact text")
    export.add_argument(
        "-o", "--output", type=Path, help="write to this file instead of standard output"
    )
    export.set_defaults(func=export_sessions)

    import_ = sub.add_parser(
        "import",
        help="add messages from JSON Lines; keeps ids and times, skips ids present",
        description="Add the messages of a JSON Lines file (as written by export) to URL, "
        "keeping their ids and times; messages whose id the session already holds are "
        "skipped. A bad line stops the import once the lines before it are stored, and the "
        "error says how many that was: fix the line and run the same import again.",
    )
    import_.add_argument("url", metavar="URL")
    import_.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="a .jsonl file; default stdin"
    )
    import_.add_argument("--batch-size", type=positive_int, default=500, metavar="N")
    import_.set_defaults(func=import_sessions)

    delete = sub.add_parser("delete", help="delete every message of a session")
    delete.add_argument("url", metavar="URL")
    delete.add_argument("sessions", nargs="+", metavar="SESSION")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=delete_sessions)

    for parser_ in (list_, show, export, import_, delete):
        parser_.add_argument(
            "-O",
            "--option",
            dest="options",
            action="append",
            type=backend_option,
            default=[],
            metavar="KEY=VALUE",
            help="a provider option, repeatable (e.g. -O prefix=myapp for Redis)",
        )

    _migrate.add_parser(sub)


# -- list ---------------------------------------------------------------------------------------


async def list_sessions(args: argparse.Namespace) -> int:
    """Print the session ids at a URL with their message counts."""
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        ids = await history.list_sessions(prefix=args.prefix)
        counts = [await history.count_messages(session) for session in ids]
    if args.json:
        rows = [{"session": s, "messages": n} for s, n in zip(ids, counts, strict=True)]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return 0
    if not sys.stdout.isatty():
        # Piped: plain `id<TAB>count` lines; ids never hold tabs or newlines.
        sys.stdout.write("".join(f"{s}\t{n}\n" for s, n in zip(ids, counts, strict=True)))
        return 0
    table = Table()
    table.add_column("session", overflow="fold")
    table.add_column("messages", justify="right")
    for session, count in zip(ids, counts, strict=True):
        table.add_row(Text(session), f"{count:,}")
    console = out_console()
    console.print(Text(f"sessions at {display_url(args.url)}", style="bold"))
    console.print(table)
    err_console().print(f"{len(ids):,} sessions, {sum(counts):,} messages")
    return 0


# -- show ---------------------------------------------------------------------------------------


async def show_session(args: argparse.Namespace) -> int:
    """Print one session as a transcript (or as export records with `--json`)."""
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        total = await history.count_messages(args.session)
        if total == 0:
            raise CommandError(f"no session {args.session!r} at {display_url(args.url)}")
        messages = await history.list_messages(args.session, limit=args.last)
    if args.json:
        out = sys.stdout.buffer
        for message in messages:
            out.write(dump_record(to_record(args.session, message)))
        out.flush()
        return 0
    console = out_console()
    shown = f" (the last {len(messages):,})" if len(messages) < total else ""
    header = Text(f"session {args.session!r} at {display_url(args.url)}: ", style="bold")
    header.append(f"{total:,} messages{shown}", style="bold")
    console.print(header)
    for message in messages:
        console.print(render_message(message))
    return 0


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _part_text(part: dict[str, Any]) -> str:
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind == "refusal":
        return f"[refusal] {part.get('refusal', '')}"
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url", "") if isinstance(image, dict) else ""
        shown = url if not url.startswith("data:") else url.split(",", 1)[0] + ",..."
        return f"[image {shown}]"
    if kind == "file":
        file = part.get("file")
        name = file.get("filename") or file.get("file_id") if isinstance(file, dict) else None
        return f"[file {name or ''}]".replace(" ]", "]")
    return f"[{kind}]"


def render_message(message: ChatMessage) -> Text:
    """One message as transcript text: a header line (time, role, name), then its content."""
    text = Text()
    text.append(f"[{_when(message.created_at)}] ", style="dim")
    text.append(message.role, style=_ROLE_STYLES[message.role])
    if message.name:
        text.append(f" ({message.name})", style="bold")
    if message.tool_call_id:
        text.append(f" result of {message.tool_call_id}", style="yellow")
    text.append(f"  id {message.id}\n", style="dim")
    body = (
        message.content
        if isinstance(message.content, str)
        else "\n".join(_part_text(part) for part in message.content)
    )
    if body:
        text.append("  " + body.replace("\n", "\n  ") + "\n")
    if message.refusal:
        text.append(f"  refused: {message.refusal}\n", style="red")
    for call in message.tool_calls:
        text.append("  -> ", style="green")
        text.append(f"{call.name}({call.arguments})", style="green")
        text.append(f"  call {call.id}\n", style="dim")
    if message.metadata:
        metadata = json.dumps(message.metadata, ensure_ascii=False, sort_keys=True)
        text.append(f"  metadata {metadata}\n", style="dim")
    return text


# -- export / import ----------------------------------------------------------------------------


async def export_sessions(args: argparse.Namespace) -> int:
    """Write every message of the matching sessions as JSON Lines, session by session."""
    with ExitStack() as files:
        out: IO[bytes] = (
            files.enter_context(args.output.open("wb"))
            if args.output is not None
            else sys.stdout.buffer
        )
        async with open_history(args.url, must_exist=True, options=args.options) as history:
            sessions = await history.list_sessions(prefix=args.prefix)
            total = 0
            for session in sessions:
                for message in await history.list_messages(session):
                    out.write(dump_record(to_record(session, message)))
                    total += 1
        out.flush()
    err_console().print(
        f"exported {total:,} messages of {len(sessions):,} sessions from {display_url(args.url)}"
    )
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


class ImportStopped(CommandError):
    """A bad line stopped `sessions import`; the messages of the lines before it are stored.

    Attributes:
        line: The bad line's number, from 1.
        reason: What was wrong with it.
        imported: Messages read from the lines before it, all stored now.
        new: How many of those were not stored before this run.
        without_id: How many of those had no `id`, so a re-run would add them again.
    """

    def __init__(self, line: int, reason: str, imported: int, new: int, without_id: int) -> None:
        self.line = line
        self.reason = reason
        self.imported = imported
        self.new = new
        self.without_id = without_id
        message = f"line {line}: {reason}; "
        if imported == 0:
            message += "nothing was imported"
        else:
            message += (
                f"the {_count(imported, 'message')} before it were imported ({new:,} of them "
                f"new); fix line {line} and run the import again: messages already imported "
                "are skipped by id"
            )
            if without_id:
                message += (
                    f", except the {_count(without_id, 'record')} without an 'id', which "
                    "would be added again (drop them from the file first)"
                )
        super().__init__(message)


async def import_sessions(args: argparse.Namespace) -> int:
    """Add the messages of a JSON Lines file, batch by batch, in file order per session.

    A bad line stops the import once the lines before it are stored; the error says how many
    that was, and running the import again skips them (imports are idempotent by id).
    """
    with ExitStack() as files:
        source: IO[bytes] = sys.stdin.buffer
        if args.file != "-":
            # One task runs, so a blocking read holds up nothing.
            source = files.enter_context(open(args.file, "rb"))  # noqa: ASYNC230
        async with open_history(args.url, must_exist=False, options=args.options) as history:
            before: dict[str, int] = {}
            pending: list[ChatMessage] = []
            current: str | None = None
            read = without_id = 0

            async def flush() -> None:
                if current is not None and pending:
                    await history.add_messages(current, pending)
                    pending.clear()

            async def added() -> int:
                total = 0
                for session, count in before.items():
                    total += await history.count_messages(session) - count
                return total

            try:
                for record in read_records(source):
                    if record.session != current or len(pending) >= args.batch_size:
                        await flush()
                        current = record.session
                        if record.session not in before:
                            before[record.session] = await history.count_messages(current)
                    pending.append(record.message)
                    read += 1
                    without_id += not record.has_id
            except RecordError as exc:
                # Store the good lines read since the last batch too, so the error can say
                # simply "everything before line N".
                await flush()
                raise ImportStopped(exc.line, exc.reason, read, await added(), without_id) from None
            await flush()
            new = await added()
    err_console().print(
        f"imported {new:,} new messages into {len(before):,} sessions at "
        f"{display_url(args.url)} ({read - new:,} of {read:,} were already there)"
    )
    return 0


# -- delete -------------------------------------------------------------------------------------


def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")


async def delete_sessions(args: argparse.Namespace) -> int:
    """Delete every message of the named sessions, asking first unless `--yes`."""
    where = display_url(args.url)
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        counts = {session: await history.count_messages(session) for session in args.sessions}
        missing = [session for session, count in counts.items() if count == 0]
        if missing:
            raise CommandError(f"no session {missing[0]!r} at {where}; nothing was deleted")
        if not args.yes:
            what = ", ".join(f"{s!r} ({n:,} messages)" for s, n in counts.items())
            if not _confirm(f"Delete session {what} at {where}?"):
                err_console().print("nothing deleted")
                return 1
        for session in counts:
            await history.clear(session)
    err_console().print(
        f"deleted {len(counts):,} session(s), {sum(counts.values()):,} messages, at {where}"
    )
    return 0
