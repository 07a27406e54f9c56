"""`memweave sessions migrate`: copy sessions between backends, resumably, then verify them.

Sessions are listed a page at a time and each is streamed from the source a page at a time
(`iter_messages`) and appended to the target in batches of the same size. Appends are
idempotent by message id, so a run that died half way is finished by running it again: a
target session whose ids are the start of the source session (checked page by page against
the source) is continued after them, in order. A target session holding anything else is
left untouched and reported. Each copied session is then read back, page by page, and its
count and SHA-256 checksum compared with the source's.

Memory: one page of the source and one of the target at a time (`--batch-size` messages
each), whatever the length of a session or the number of sessions.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memweave._codec import encode
from memweave.cli._common import (
    CommandError,
    backend_option,
    display_url,
    err_console,
    open_history,
    page_size,
    progress_bar,
    session_pages,
)
from memweave.messages import ChatMessage
from memweave.providers import ChatHistoryProvider

__all__ = ["add_parser", "migrate_sessions"]


def add_parser(actions: argparse._SubParsersAction[Any]) -> None:
    """Register `sessions migrate`."""
    migrate = actions.add_parser(
        "migrate",
        help="copy sessions to another backend page by page; resumable, verified at the end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("source", metavar="FROM_URL")
    migrate.add_argument("target", metavar="TO_URL")
    migrate.add_argument("--prefix", help="only session ids starting with this exact text")
    migrate.add_argument(
        "--batch-size",
        type=page_size,
        default=500,
        metavar="N",
        help="messages per page read and per append (default 500, at most 10,000)",
    )
    for side, url in (("from", "FROM_URL"), ("to", "TO_URL")):
        migrate.add_argument(
            f"--{side}-option",
            dest=f"{side}_options",
            action="append",
            type=backend_option,
            default=[],
            metavar="KEY=VALUE",
            help=f"a provider option for {url}, repeatable (e.g. namespace=myapp)",
        )
    migrate.set_defaults(func=migrate_sessions)


class _Checksum:
    """`memweave.cli._records.checksum`, fed one message at a time."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, message: ChatMessage) -> None:
        data = encode(message)
        self._digest.update(len(data).to_bytes(8, "big"))
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass
class _Copied:
    session: str
    count: int = 0
    checksum: str = ""
    kept: int = 0
    conflict: str | None = None


async def _copy(
    source: ChatHistoryProvider,
    target: ChatHistoryProvider,
    session: str,
    batch_size: int,
    advance: Callable[[int], None],
) -> _Copied:
    copied = _Copied(session)
    digest = _Checksum()
    messages = source.iter_messages(session, page_size=batch_size)
    present = await target.count_messages(session)
    if present:
        # Resume: the target must hold the start of the source session, id for id.
        async for stored in target.iter_messages(session, page_size=batch_size):
            message = await anext(messages, None)
            if message is None or message.id != stored.id:
                copied.conflict = (
                    f"the target already holds {present:,} messages that are not the start "
                    "of this session; left it untouched"
                )
                return copied
            digest.add(message)
            copied.kept += 1
        advance(copied.kept)
    batch: list[ChatMessage] = []
    copied.count = copied.kept
    async for message in messages:
        digest.add(message)
        batch.append(message)
        if len(batch) == batch_size:
            await target.add_messages(session, batch)
            copied.count += len(batch)
            advance(len(batch))
            batch = []
    if batch:
        await target.add_messages(session, batch)
        copied.count += len(batch)
        advance(len(batch))
    copied.checksum = digest.hexdigest()
    return copied


async def _verify(target: ChatHistoryProvider, copied: _Copied, batch_size: int) -> str | None:
    if copied.conflict is not None:
        return copied.conflict
    count = await target.count_messages(copied.session)
    if count != copied.count:
        return f"the target holds {count:,} messages, the source {copied.count:,}"
    digest = _Checksum()
    async for message in target.iter_messages(copied.session, page_size=batch_size):
        digest.add(message)
    if digest.hexdigest() != copied.checksum:
        return "the target's messages differ from the source's (checksum mismatch)"
    return None


async def _total(source: ChatHistoryProvider, prefix: str | None) -> int:
    total = 0
    async for page in session_pages(source, prefix):
        for session in page:
            total += await source.count_messages(session)
    return total


async def migrate_sessions(args: argparse.Namespace) -> int:
    """Copy every matching session from `FROM_URL` to `TO_URL`, verifying each one."""
    if args.source == args.target and args.from_options == args.to_options:
        raise CommandError(f"FROM_URL and TO_URL are the same ({display_url(args.source)})")
    source_name, target_name = display_url(args.source), display_url(args.target)
    console = err_console()
    sessions = messages = kept = failed = 0
    async with (
        open_history(args.source, must_exist=True, options=args.from_options) as source,
        open_history(args.target, must_exist=False, options=args.to_options) as target,
    ):
        with progress_bar(console, "messages") as progress:
            # Only a progress bar on a terminal needs the total: counting costs a pass.
            total = await _total(source, args.prefix) if console.is_terminal else None
            task = progress.add_task(f"{source_name} -> {target_name}", total=total)
            async for page in session_pages(source, args.prefix):
                for session in page:
                    copied = await _copy(
                        source,
                        target,
                        session,
                        args.batch_size,
                        lambda n: progress.advance(task, n),
                    )
                    problem = await _verify(target, copied, args.batch_size)
                    sessions += 1
                    messages += copied.count
                    kept += copied.kept
                    if problem is not None:
                        failed += 1
                        console.print(f"session {session!r}: {problem}")
    if failed:
        raise CommandError(
            f"migration from {source_name} to {target_name} incomplete: {failed:,} of "
            f"{sessions:,} sessions do not match (listed above)"
        )
    resumed = f" ({kept:,} were already there)" if kept else ""
    console.print(
        f"migrated {sessions:,} sessions, {messages:,} messages, from {source_name} to "
        f"{target_name}{resumed}; verified: counts and SHA-256 checksums match"
    )
    return 0
