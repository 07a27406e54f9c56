"""Reading a session for `ChatHistoryProvider`: pages before a cursor, iteration, and decoding
what comes back with each corrupt entry named by its position or message id."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from memweave._codec import decode_many, decode_one
from memweave.errors import CorruptRecord, InvalidArgument, SessionChanged
from memweave.messages import ChatMessage
from memweave.providers._records import PageRow

if TYPE_CHECKING:
    from memweave.providers.base import ChatHistoryProvider

__all__ = [
    "MAX_PAGE",
    "NOT_IN_SESSION",
    "decode_page",
    "decoded",
    "decoded_system",
    "iterate",
    "next_page",
    "older",
    "read_decoded",
]

logger = logging.getLogger("memweave.providers.base")  # where these warnings always came from

MAX_PAGE = 10_000
"""The most messages one page holds (`iter_messages`' largest `page_size`)."""

NOT_IN_SESSION = "is not the id of a message stored in this session"
"""How `InvalidArgument` describes a cursor id the session does not hold."""


async def older(
    provider: ChatHistoryProvider, session_id: str, before: str, limit: int | None
) -> list[ChatMessage]:
    """The `limit` messages just older than `before` (every older one for None)."""
    if limit == 0:
        found = await provider._io(
            "list_messages",
            lambda: provider._read_page(session_id, after=None, before=before, limit=1),
        )
        if found is None:
            raise InvalidArgument("before", before, NOT_IN_SESSION)
        return []
    pages: list[list[ChatMessage]] = []
    cursor, wanted = before, limit
    while True:
        size = MAX_PAGE if wanted is None else min(wanted, MAX_PAGE)
        rows = await provider._io(
            "list_messages",
            functools.partial(
                provider._read_page, session_id, after=None, before=cursor, limit=size
            ),
        )
        if rows is None:
            if cursor == before:
                raise InvalidArgument("before", before, NOT_IN_SESSION)
            raise SessionChanged(session_id)
        pages.append(decode_page(provider, session_id, rows, None))
        if wanted is not None:
            wanted -= len(rows)
        if len(rows) < size or wanted == 0 or not rows:
            break
        cursor = rows[0][0]
    return [message for page in reversed(pages) for message in page]


async def iterate(
    provider: ChatHistoryProvider, session_id: str, page_size: int
) -> AsyncIterator[ChatMessage]:
    """Yield the session's messages page by page, each page read after the previous one."""
    seen = 0
    cursors: list[str] = []
    while True:
        provider._check_open("iter_messages")
        rows = await provider._io(
            "iter_messages", functools.partial(next_page, provider, session_id, cursors, page_size)
        )
        if rows is None:
            raise SessionChanged(session_id)
        for message in decode_page(provider, session_id, rows, seen):
            yield message
        seen += len(rows)
        if len(rows) < page_size:
            return
        cursors = [row[0] for row in rows]


async def next_page(
    provider: ChatHistoryProvider, session_id: str, cursors: Sequence[str], page_size: int
) -> list[PageRow] | None:
    """The first page, or the page after the newest of `cursors` still stored (the last
    message read may have been deleted meanwhile); None when none of them is."""
    if not cursors:
        return await provider._read_page(session_id, after=None, before=None, limit=page_size)
    for cursor in reversed(cursors):
        rows = await provider._read_page(session_id, after=cursor, before=None, limit=page_size)
        if rows is not None:
            return rows
    return None


def decode_page(
    provider: ChatHistoryProvider,
    session_id: str,
    rows: Sequence[PageRow],
    first_position: int | None,
) -> list[ChatMessage]:
    """Decode a page; a corrupt entry is named by its message id (and position if known)."""
    try:
        return decode_many([data for _, data in rows], session_id=session_id)
    except CorruptRecord:
        pass
    out: list[ChatMessage] = []
    for offset, (message_id, data) in enumerate(rows):
        position = None if first_position is None else first_position + offset
        try:
            out.append(decode_one(data, session_id=session_id, position=offset))
        except CorruptRecord as exc:
            error = CorruptRecord(session_id, position, exc.reason, message_id=message_id)
            if provider.on_corrupt == "raise":
                raise error from None
            logger.warning("skipping %s", error)
    return out


async def decoded(
    provider: ChatHistoryProvider,
    session_id: str,
    limit: int | None,
    operation: str = "list_messages",
) -> list[ChatMessage]:
    """Read and decode the whole session, or its newest `limit` entries (see `read_decoded`)."""
    return (await read_decoded(provider, session_id, limit, operation))[1]


async def read_decoded(
    provider: ChatHistoryProvider,
    session_id: str,
    limit: int | None,
    operation: str = "list_messages",
) -> tuple[int, list[ChatMessage]]:
    """Read and decode the whole session, or its newest `limit` entries.

    Returns how many entries were read (corrupt ones included) and the decoded messages.
    A corrupt entry is named by its position in the session. A partial read does not know
    where it starts, so only when it holds a corrupt entry is the session counted (the
    start is `count - len(rows)`; a writer appending between read and count shifts it).
    """
    rows = await provider._io(operation, lambda: provider._read(session_id, limit))
    if limit is None or len(rows) < limit:
        return len(rows), decode_many(rows, session_id=session_id, on_corrupt=provider.on_corrupt)
    try:
        return len(rows), decode_many(rows, session_id=session_id, on_corrupt="raise")
    except CorruptRecord as exc:
        corrupt = exc
    first = max(0, await provider._io(operation, lambda: provider._count(session_id)) - len(rows))
    if provider.on_corrupt == "raise":
        position = first + (corrupt.position or 0)
        raise CorruptRecord(session_id, position, corrupt.reason) from None
    return len(rows), decode_many(
        rows, session_id=session_id, on_corrupt="skip", first_position=first
    )


async def decoded_system(provider: ChatHistoryProvider, session_id: str) -> list[ChatMessage]:
    """Decode the session's system messages; a corrupt one is named by its session position."""
    rows = await provider._io("list_messages", lambda: provider._read_system(session_id))
    try:
        return decode_many(rows, session_id=session_id, on_corrupt="raise")
    except CorruptRecord:
        pass
    # The system entries are scattered through the session, so their indexes among
    # themselves are no positions. Only the whole session tells them: decode it, which
    # raises at (or skips with a warning) each corrupt entry by its position.
    return [m for m in await decoded(provider, session_id, None) if m.role == "system"]
