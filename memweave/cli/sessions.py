"""`memweave sessions ...`: list, show, export and import stored conversations.

Every command reads through the paged history API, so none holds a whole session or the
whole list of sessions: sessions are listed a page at a time and messages are streamed a page
at a time. `migrate` lives in `memweave.cli._migrate`; `delete`, `delete-messages`,
`truncate-after`, `prune` and `purge-expired` in `memweave.cli._edits`. Every command opens the
backend a URL names with `memweave.from_url`; URLs are shown with their password masked.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich import box
from rich.table import Table
from rich.text import Text

from memweave.cli import _edits, _migrate
from memweave.cli._common import (
    CommandError,
    add_backend_options,
    display_url,
    err_console,
    open_history,
    out_console,
    page_size,
    positive_int,
    session_pages,
)
from memweave.cli._records import RecordError, dump_record, read_records, to_record
from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage
from memweave.providers import ChatHistoryProvider
from memweave.providers.base import SessionInfo

__all__ = [
    "ImportStopped",
    "add_parser",
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

_PAGE = 500
"""Messages read per page when a command streams a session."""


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `sessions` and its subcommands on the top-level parser."""
    parser = commands.add_parser(
        "sessions",
        help="inspect, export, import, edit, prune and migrate stored conversations",
        description="Inspect, export, import, edit, prune and migrate stored conversations.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    list_ = sub.add_parser(
        "list",
        help="list the sessions stored at URL, with message counts",
        description="List the sessions stored at URL, sorted by id, with their message "
        "counts. Sessions are read a page at a time; --limit and --after show one page.",
    )
    list_.add_argument("url", metavar="URL", help="a backend URL, e.g. sqlite+aiosqlite:///chat.db")
    list_.add_argument("--prefix", help="only session ids starting with this exact text")
    list_.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N sessions (default: all)"
    )
    list_.add_argument(
        "--after",
        metavar="ID",
        help="only sessions sorting after this id (the last one of the previous page)",
    )
    list_.add_argument(
        "-l",
        "--long",
        action="store_true",
        help="also show when each session was created and updated",
    )
    list_.add_argument("--json", action="store_true", help="print one JSON array")
    list_.set_defaults(func=list_sessions)

    show = sub.add_parser(
        "show",
        help="print one conversation as a readable transcript",
        description="Print one conversation as a readable transcript, oldest first. "
        "--last N shows the newest N; --before ID the ones older than message ID (with --last "
        "N, the N just older: a page further back). Each message shows its id.",
    )
    show.add_argument("url", metavar="URL")
    show.add_argument("session", metavar="SESSION")
    show.add_argument("--last", type=positive_int, metavar="N", help="only the newest N messages")
    show.add_argument(
        "--before", metavar="ID", help="only messages older than the message with this id"
    )
    show.add_argument(
        "--json", action="store_true", help="print export records (JSON Lines) instead"
    )
    show.set_defaults(func=show_session)

    export = sub.add_parser(
        "export",
        help="write every message as JSON Lines (one object per message)",
        description="Write every message of the matching sessions as JSON Lines, session by "
        "session, oldest first. Messages are streamed a page at a time, so memory stays "
        "bounded by the page size however long a session is.",
    )
    export.add_argument("url", metavar="URL")
    export.add_argument("--prefix", help="only session ids starting with this exact text")
    export.add_argument(
        "-o", "--output", type=Path, help="write to this file instead of standard output"
    )
    export.add_argument(
        "--page-size",
        type=page_size,
        default=_PAGE,
        metavar="N",
        help=f"messages read per page (default {_PAGE}, at most 10,000)",
    )
    export.set_defaults(func=export_sessions)

    import_ = sub.add_parser(
        "import",
        help="add messages from JSON Lines; keeps ids and times, skips ids present",
        description="Add the messages of a JSON Lines file (as written by export) to URL, "
        "keeping their ids and times; messages whose id the session already holds are "
        "skipped. The file is read a batch at a time. A bad line stops the import once the "
        "lines before it are stored, and the error says how many that was: fix the line and "
        "run the same import again. Sessions are counted per run of consecutive lines, as "
        "export writes them.",
    )
    import_.add_argument("url", metavar="URL")
    import_.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="a .jsonl file; default stdin"
    )
    import_.add_argument("--batch-size", type=positive_int, default=500, metavar="N")
    import_.set_defaults(func=import_sessions)

    for parser_ in (list_, show, export, import_):
        add_backend_options(parser_)

    _edits.add_parsers(sub)
    _migrate.add_parser(sub)


# -- list ---------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _json_row(info: SessionInfo, long: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"session": info.id, "messages": info.message_count}
    if long:
        row["created_at"] = _iso(info.created_at)
        row["updated_at"] = _iso(info.updated_at)
    return row


def _when_or_dash(moment: datetime | None) -> str:
    return "-" if moment is None else _when(moment)


class _ListWriter:
    """Writes `sessions list` rows as they come, page by page, in the chosen format."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json: bool = args.json
        self.long: bool = args.long
        self.terminal = not self.json and sys.stdout.isatty()
        self.url: str = args.url
        self.rows = 0

    def write(self, page: list[SessionInfo]) -> None:
        if self.json:
            # Streamed, yet byte for byte what json.dumps(rows, indent=2) would print.
            for info in page:
                text = json.dumps(_json_row(info, self.long), ensure_ascii=False, indent=2)
                sys.stdout.write(("[\n" if not self.rows else ",\n") + _indent(text))
                self.rows += 1
        elif self.terminal:
            self._table(page)
            self.rows += len(page)
        else:
            # Piped: tab-separated lines; ids never hold tabs or newlines.
            for info in page:
                fields = [info.id, str(info.message_count)]
                if self.long:
                    fields += [_iso(info.created_at) or "", _iso(info.updated_at) or ""]
                sys.stdout.write("\t".join(fields) + "\n")
            self.rows += len(page)

    def _table(self, page: list[SessionInfo]) -> None:
        console = out_console()
        first = not self.rows
        if first:
            console.print(Text(f"sessions at {display_url(self.url)}", style="bold"))
        # One table per page; fixed widths line the pages up as one table.
        table = Table(box=box.SIMPLE_HEAD, show_header=first, show_edge=False, expand=True)
        table.add_column("session", overflow="fold", ratio=1)
        table.add_column("messages", justify="right", width=11, no_wrap=True)
        if self.long:
            table.add_column("created", width=23, no_wrap=True)
            table.add_column("updated", width=23, no_wrap=True)
        for info in page:
            cells: list[Text | str] = [Text(info.id), f"{info.message_count:,}"]
            if self.long:
                cells += [_when_or_dash(info.created_at), _when_or_dash(info.updated_at)]
            table.add_row(*cells)
        console.print(table)

    def close(self) -> None:
        if self.json:
            sys.stdout.write("\n]\n" if self.rows else "[]\n")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


async def _infos(history: ChatHistoryProvider, ids: Iterable[str]) -> list[SessionInfo]:
    """The info of each id still live (a session deleted since it was listed is left out)."""
    found = [await history.session_info(session) for session in ids]
    return [info for info in found if info is not None]


async def list_sessions(args: argparse.Namespace) -> int:
    """Print the session ids at a URL with their message counts, one page at a time."""
    writer = _ListWriter(args)
    listed = messages = 0
    last: str | None = None
    more: str | None = None  # the --after of the next page, when there is one
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        pages = session_pages(history, args.prefix, after=args.after, limit=args.limit)
        async for page in pages:
            infos = await _infos(history, page)
            writer.write(infos)
            listed += len(page)
            messages += sum(info.message_count for info in infos)
            last = page[-1]
        # A full page: look one id ahead, to say how to list the next page.
        full = args.limit is not None and listed == args.limit
        if full and await history.list_sessions(args.prefix, limit=1, after=last):
            more = last
    writer.close()
    sys.stdout.flush()
    console = err_console()
    if writer.terminal:
        console.print(f"{writer.rows:,} sessions, {messages:,} messages")
    if more is not None:
        console.print(f"more sessions follow: add --after {shlex.quote(more)}")
    return 0


# -- show ---------------------------------------------------------------------------------------


async def _page(
    history: ChatHistoryProvider, session: str, last: int, before: str | None
) -> list[ChatMessage]:
    """The newest `last` messages, or with `before` the `last` just older than that one."""
    try:
        return await history.list_messages(session, limit=last, before=before)
    except InvalidArgument as exc:
        if exc.name != "before":
            raise
        raise CommandError(f"no message {before!r} in session {session!r}") from None


async def _stream(
    history: ChatHistoryProvider, session: str, before: str | None
) -> AsyncIterator[ChatMessage]:
    """Every message, or with `before` every one older than that one, a page at a time."""
    async for message in history.iter_messages(session, page_size=_PAGE):
        if message.id == before:
            return
        yield message


async def _each(messages: list[ChatMessage]) -> AsyncIterator[ChatMessage]:
    for message in messages:
        yield message


async def show_session(args: argparse.Namespace) -> int:
    """Print one session as a transcript (or as export records with `--json`); streamed a
    page at a time, unless `--last N` asks for one page of N."""
    session, before = args.session, args.before
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        total = await history.count_messages(session)
        if total == 0:
            raise CommandError(f"no session {session!r} at {display_url(args.url)}")
        page: list[ChatMessage] | None = None
        if args.last is not None:
            page = await _page(history, session, args.last, before)
            messages = _each(page)
        else:
            if before is not None:
                # Fails on an unknown `before` before anything is printed.
                await _page(history, session, 0, before)
            messages = _stream(history, session, before)
        if args.json:
            out = sys.stdout.buffer
            async for message in messages:
                out.write(dump_record(to_record(session, message)))
            out.flush()
            return 0
        console = out_console()
        header = Text(f"session {session!r} at {display_url(args.url)}: ", style="bold")
        header.append(f"{total:,} messages{_shown(page, before, total)}", style="bold")
        console.print(header)
        async for message in messages:
            console.print(render_message(message))
        oldest = page[0].id if page else None
        if oldest is not None and await history.list_messages(session, limit=1, before=oldest):
            err_console().print(f"older messages: add --before {shlex.quote(oldest)}")
    return 0


def _shown(page: list[ChatMessage] | None, before: str | None, total: int) -> str:
    """What part of the session a transcript shows, for its header."""
    if before is not None:
        return (
            f" (those before {before!r})"
            if page is None
            else f" (the {len(page):,} before {before!r})"
        )
    if page is not None and len(page) < total:
        return f" (the last {len(page):,})"
    return ""


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
    """Write every message of the matching sessions as JSON Lines, session by session, one
    page of one session in memory at a time."""
    total = sessions = 0
    with ExitStack() as files:
        out: IO[bytes] = (
            files.enter_context(args.output.open("wb"))
            if args.output is not None
            else sys.stdout.buffer
        )
        async with open_history(args.url, must_exist=True, options=args.options) as history:
            async for page in session_pages(history, args.prefix):
                for session in page:
                    written = 0
                    async for message in history.iter_messages(session, page_size=args.page_size):
                        out.write(dump_record(to_record(session, message)))
                        written += 1
                    total += written
                    sessions += written > 0
        out.flush()
    err_console().print(
        f"exported {total:,} messages of {sessions:,} sessions from {display_url(args.url)}"
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
    that was, and running the import again skips them (imports are idempotent by id). New
    messages are counted per run of consecutive lines of one session, so memory holds one
    batch and no list of sessions.
    """
    with ExitStack() as files:
        source: IO[bytes] = sys.stdin.buffer
        if args.file != "-":
            # One task runs, so a blocking read holds up nothing.
            source = files.enter_context(open(args.file, "rb"))  # noqa: ASYNC230
        async with open_history(args.url, must_exist=False, options=args.options) as history:
            pending: list[ChatMessage] = []
            current: str | None = None
            count_before = new = runs = read = without_id = 0

            async def flush() -> None:
                if current is not None and pending:
                    await history.add_messages(current, pending)
                    pending.clear()

            async def new_in_run() -> int:
                if current is None:
                    return 0
                return await history.count_messages(current) - count_before

            try:
                for record in read_records(source):
                    if record.session != current:
                        await flush()
                        new += await new_in_run()
                        current = record.session
                        count_before = await history.count_messages(current)
                        runs += 1
                    elif len(pending) >= args.batch_size:
                        await flush()
                    pending.append(record.message)
                    read += 1
                    without_id += not record.has_id
            except RecordError as exc:
                # Store the good lines read since the last batch too, so the error can say
                # simply "everything before line N".
                await flush()
                new += await new_in_run()
                raise ImportStopped(exc.line, exc.reason, read, new, without_id) from None
            await flush()
            new += await new_in_run()
    err_console().print(
        f"imported {new:,} new messages into {runs:,} sessions at "
        f"{display_url(args.url)} ({read - new:,} of {read:,} were already there)"
    )
    return 0
