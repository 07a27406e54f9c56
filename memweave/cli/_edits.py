"""`memweave sessions delete|delete-messages|truncate-after|prune|purge-expired`: deleting.

Every command that deletes what a user can still read asks first, unless `--yes`; the
question names what goes and where. `purge-expired` only reclaims sessions that already read
as gone, so it does not ask.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from memweave.cli._common import (
    CommandError,
    add_backend_options,
    display_url,
    duration,
    err_console,
    open_history,
)
from memweave.errors import InvalidArgument
from memweave.providers import ChatHistoryProvider

__all__ = [
    "add_parsers",
    "delete_messages",
    "delete_sessions",
    "format_duration",
    "prune_sessions",
    "purge_expired",
    "truncate_after",
]


def add_parsers(actions: argparse._SubParsersAction[Any]) -> None:
    """Register the deleting subcommands of `sessions`."""
    delete = actions.add_parser("delete", help="delete every message of a session")
    delete.add_argument("url", metavar="URL")
    delete.add_argument("sessions", nargs="+", metavar="SESSION")
    delete.set_defaults(func=delete_sessions)

    messages = actions.add_parser(
        "delete-messages",
        help="delete single messages of a session (with the tool results of their calls)",
        description="Delete the messages with these ids from SESSION, atomically. A message "
        "that called tools takes its tool results with it; naming a tool result without the "
        "message that called it is refused. `sessions show` prints each message's id.",
    )
    messages.add_argument("url", metavar="URL")
    messages.add_argument("session", metavar="SESSION")
    messages.add_argument("ids", nargs="+", metavar="ID", help="a message id")
    messages.set_defaults(func=delete_messages)

    truncate = actions.add_parser(
        "truncate-after",
        help="delete every message newer than a message (to redo a turn)",
        description="Delete every message of SESSION newer than message ID, atomically; the "
        "tool results that directly follow ID stay with it.",
    )
    truncate.add_argument("url", metavar="URL")
    truncate.add_argument("session", metavar="SESSION")
    truncate.add_argument("id", metavar="ID", help="the last message to keep")
    truncate.set_defaults(func=truncate_after)

    prune = actions.add_parser(
        "prune",
        help="delete the sessions not updated for a while (retention)",
        description="Delete every session not updated (no message added or deleted) within "
        "--older-than, in batches; a session written to meanwhile is kept. Run it from cron "
        "with --yes. Durations: 30d, 12h, 90m, 45s, 2w, or parts like 1d12h.",
    )
    prune.add_argument("url", metavar="URL")
    prune.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="DURATION",
        help="delete sessions not updated within this long, e.g. 30d",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="only count the sessions that would go"
    )
    prune.set_defaults(func=prune_sessions)

    purge = actions.add_parser(
        "purge-expired",
        help="reclaim the storage of sessions whose ttl ran out",
        description="Delete what is left of sessions whose ttl ran out, in batches. They "
        "already read as empty and are never listed, so nothing visible changes.",
    )
    purge.add_argument("url", metavar="URL")
    purge.set_defaults(func=purge_expired)

    for parser in (delete, messages, truncate, prune):
        parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    for parser in (delete, messages, truncate, prune, purge):
        add_backend_options(parser)


def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _declined() -> int:
    err_console().print("nothing deleted")
    return 1


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def format_duration(value: timedelta) -> str:
    """`value` as `parse_duration` reads it back, days to seconds (`30d`, `1d12h`)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


async def _session_size(history: ChatHistoryProvider, session: str, where: str) -> int:
    """The session's message count; an unknown session is an error (a typo, most likely)."""
    count = await history.count_messages(session)
    if count == 0:
        raise CommandError(f"no session {session!r} at {where}; nothing was deleted")
    return count


async def _check_message(history: ChatHistoryProvider, session: str, message_id: str) -> None:
    """Raise when `message_id` is not stored in the session (one cursor lookup)."""
    try:
        await history.list_messages(session, limit=0, before=message_id)
    except InvalidArgument as exc:
        if exc.name != "before":
            raise
        raise CommandError(
            f"no message {message_id!r} in session {session!r}; nothing was deleted"
        ) from None


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
                return _declined()
        for session in counts:
            await history.clear(session)
    err_console().print(
        f"deleted {len(counts):,} session(s), {sum(counts.values()):,} messages, at {where}"
    )
    return 0


async def delete_messages(args: argparse.Namespace) -> int:
    """Delete single messages (and the tool results of their calls), asking first."""
    where = display_url(args.url)
    ids = list(dict.fromkeys(args.ids))
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        total = await _session_size(history, args.session, where)
        for message_id in ids:
            await _check_message(history, args.session, message_id)
        if not args.yes:
            question = (
                f"Delete {_plural(len(ids), 'message')} (and the tool results of any tool "
                f"calls they made) from session {args.session!r} ({total:,} messages) at {where}?"
            )
            if not _confirm(question):
                return _declined()
        try:
            deleted = await history.delete_messages(args.session, ids)
        except InvalidArgument as exc:
            if exc.name != "message_ids":
                raise
            raise CommandError(
                f"message {exc.value!r} is a tool result and the message that called the tool "
                "is not named; name that message instead (its tool results go with it); "
                "nothing was deleted"
            ) from None
    extra = deleted - len(ids)
    taken = f" (the named ones and {_plural(extra, 'tool result')} of their calls)" if extra else ""
    err_console().print(
        f"deleted {_plural(deleted, 'message')} from session {args.session!r} at {where}{taken}"
    )
    return 0


async def truncate_after(args: argparse.Namespace) -> int:
    """Delete every message newer than one message, asking first unless `--yes`."""
    where = display_url(args.url)
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        total = await _session_size(history, args.session, where)
        await _check_message(history, args.session, args.id)
        if not args.yes:
            question = (
                f"Delete every message after {args.id!r} in session {args.session!r} "
                f"({total:,} messages) at {where}?"
            )
            if not _confirm(question):
                return _declined()
        try:
            deleted = await history.truncate_after(args.session, args.id)
        except InvalidArgument as exc:
            if exc.name != "message_id":
                raise
            # Deleted by someone else between the check and now.
            raise CommandError(
                f"no message {args.id!r} in session {args.session!r}; nothing was deleted"
            ) from None
    err_console().print(
        f"deleted {_plural(deleted, 'message')} after {args.id!r} from session "
        f"{args.session!r} at {where}"
    )
    return 0


async def prune_sessions(args: argparse.Namespace) -> int:
    """Delete (or with `--dry-run` count) the sessions not updated within `--older-than`."""
    where = display_url(args.url)
    within = format_duration(args.older_than)
    console = err_console()
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        if args.dry_run or not args.yes:
            found = await history.prune(args.older_than, dry_run=True)
            what = f"{_plural(found, 'session')} not updated within {within} at {where}"
            if args.dry_run:
                console.print(f"{what} (dry run: nothing deleted)")
                return 0
            if found == 0:
                console.print(f"{what}; nothing to delete")
                return 0
            if not _confirm(f"Delete {what}?"):
                return _declined()
        deleted = await history.prune(args.older_than)
    console.print(f"deleted {_plural(deleted, 'session')} not updated within {within} at {where}")
    return 0


async def purge_expired(args: argparse.Namespace) -> int:
    """Reclaim the storage of sessions whose ttl ran out."""
    where = display_url(args.url)
    async with open_history(args.url, must_exist=True, options=args.options) as history:
        purged = await history.purge_expired()
    err_console().print(f"purged {_plural(purged, 'expired session')} at {where}")
    return 0
