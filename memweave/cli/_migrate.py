"""`memweave sessions migrate`: copy sessions between backends, resumably, then verify them.

Each session is read whole from the source and appended to the target in batches. Appends are
idempotent by message id, so a run that died half way is finished by running it again: a
target session whose ids are the start of the source session is continued after them, in
order. A target session holding anything else is left untouched and reported. At the end
every copied session is read back and its count and SHA-256 checksum compared with the source.

Memory: the history API reads a session whole (`list_messages` has no paged read), so the
command holds one session's messages at a time and the largest session sets the peak: its
source copy, plus its target copy while a half-copied session is resumed. `--batch-size`
bounds each append, not that read. Sessions are copied one after another, so their number
does not add to the peak.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memweave.cli._common import (
    CommandError,
    backend_option,
    display_url,
    err_console,
    open_history,
    positive_int,
    progress_bar,
)
from memweave.cli._records import checksum
from memweave.providers import ChatHistoryProvider

__all__ = ["add_parser", "migrate_sessions"]


def add_parser(actions: argparse._SubParsersAction[Any]) -> None:
    """Register `sessions migrate`."""
    migrate = actions.add_parser(
        "migrate",
        help="copy sessions to another backend in batches; resumable, verified at the end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("source", metavar="FROM_URL")
    migrate.add_argument("target", metavar="TO_URL")
    migrate.add_argument("--prefix", help="only session ids starting with this exact text")
    migrate.add_argument(
        "--batch-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="messages per append (default 500); each session is still read whole",
    )
    for side, url in (("from", "FROM_URL"), ("to", "TO_URL")):
        migrate.add_argument(
            f"--{side}-option",
            dest=f"{side}_options",
            action="append",
            type=backend_option,
            default=[],
            metavar="KEY=VALUE",
            help=f"a provider option for {url}, repeatable (e.g. prefix=myapp for Redis)",
        )
    migrate.set_defaults(func=migrate_sessions)


@dataclass
class _Copied:
    session: str
    count: int
    checksum: str
    kept: int = 0
    conflict: str | None = None


async def _copy(
    source: ChatHistoryProvider,
    target: ChatHistoryProvider,
    session: str,
    batch_size: int,
    advance: Callable[[int], None],
) -> _Copied:
    # Whole: the history API has no paged read (see the module docstring on memory).
    messages = await source.list_messages(session)
    copied = _Copied(session, len(messages), checksum(messages))
    if await target.count_messages(session):
        present = [message.id for message in await target.list_messages(session)]
        if present != [message.id for message in messages[: len(present)]]:
            copied.conflict = (
                f"the target already holds {len(present):,} messages that are not the start "
                "of this session; left it untouched"
            )
            advance(len(messages))
            return copied
        copied.kept = len(present)
        advance(copied.kept)
    for start in range(copied.kept, len(messages), batch_size):
        batch = messages[start : start + batch_size]
        await target.add_messages(session, batch)
        advance(len(batch))
    return copied


async def _verify(target: ChatHistoryProvider, copied: _Copied) -> str | None:
    if copied.conflict is not None:
        return copied.conflict
    stored = await target.list_messages(copied.session)
    if len(stored) != copied.count:
        return f"the target holds {len(stored):,} messages, the source {copied.count:,}"
    if checksum(stored) != copied.checksum:
        return "the target's messages differ from the source's (checksum mismatch)"
    return None


async def migrate_sessions(args: argparse.Namespace) -> int:
    """Copy every matching session from `FROM_URL` to `TO_URL`, then verify each one."""
    if args.source == args.target and args.from_options == args.to_options:
        raise CommandError(f"FROM_URL and TO_URL are the same ({display_url(args.source)})")
    source_name, target_name = display_url(args.source), display_url(args.target)
    console = err_console()
    async with (
        open_history(args.source, must_exist=True, options=args.from_options) as source,
        open_history(args.target, must_exist=False, options=args.to_options) as target,
    ):
        sessions = await source.list_sessions(prefix=args.prefix)
        total = 0
        for session in sessions:
            total += await source.count_messages(session)
        results: list[_Copied] = []
        with progress_bar(console, "messages") as progress:
            task = progress.add_task(f"{source_name} -> {target_name}", total=total)
            for session in sessions:
                results.append(
                    await _copy(
                        source,
                        target,
                        session,
                        args.batch_size,
                        lambda n: progress.advance(task, n),
                    )
                )
        problems = [(copied.session, await _verify(target, copied)) for copied in results]
    failed = [(session, problem) for session, problem in problems if problem is not None]
    for session, problem in failed:
        console.print(f"session {session!r}: {problem}")
    if failed:
        raise CommandError(
            f"migration from {source_name} to {target_name} incomplete: {len(failed):,} of "
            f"{len(results):,} sessions do not match (listed above)"
        )
    messages = sum(copied.count for copied in results)
    kept = sum(copied.kept for copied in results)
    resumed = f" ({kept:,} were already there)" if kept else ""
    console.print(
        f"migrated {len(results):,} sessions, {messages:,} messages, from {source_name} to "
        f"{target_name}{resumed}; verified: counts and SHA-256 checksums match"
    )
    return 0
