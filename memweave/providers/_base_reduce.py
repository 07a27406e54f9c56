"""Reducer modes for `ChatHistoryProvider`: a reduced view read from the end of a session
(`reduce_on="read"`), and storing the reduced history after an append (`reduce_on="write"`)."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Literal

from memweave.errors import MemweaveError
from memweave.messages import ChatMessage
from memweave.providers._base_reads import decoded, decoded_system, read_decoded
from memweave.providers._records import StoredRecord
from memweave.reducers.base import ChatReducer

if TYPE_CHECKING:
    from memweave.providers.base import ChatHistoryProvider

__all__ = ["ReduceOn", "reduce_after_append", "reduce_stored", "reduced_view"]

ReduceOn = Literal["read", "write"]
"""When a provider's reducer applies: on `"read"` (a reduced view, storage untouched) or on
`"write"` (the stored history itself is reduced after each add)."""

logger = logging.getLogger("memweave.providers.base")  # where these warnings always came from

_FIRST_PAGE = 64
_REDUCE_ATTEMPTS = 8


async def reduced_view(
    provider: ChatHistoryProvider, session_id: str, reducer: ChatReducer
) -> list[ChatMessage]:
    """Reduce the session reading it from its end, page by page, while the reducer needs
    more; so the cost follows the kept window, not the history length."""
    page = _FIRST_PAGE
    system: list[ChatMessage] | None = None
    while True:
        read, tail = await read_decoded(provider, session_id, page)
        if read < page:
            return await reducer.reduce(tail)
        if system is None:
            system = await decoded_system(provider, session_id)
        in_tail = {message.id for message in tail}
        older_system = [message for message in system if message.id not in in_tail]
        reduced = await reducer.reduce_tail(older_system, tail)
        if reduced is not None:
            return reduced
        page *= 4


async def reduce_after_append(
    provider: ChatHistoryProvider, session_id: str, reducer: ChatReducer
) -> None:
    """Reduce the stored history after a committed append; a failure is logged, not raised,
    because the caller's append succeeded and the next add reduces again."""
    try:
        stored = await reduce_stored(provider, session_id, reducer)
    except MemweaveError as exc:
        logger.warning(
            "messages were added to session %r, but reducing its stored history failed; "
            "it stays unreduced until a later add: %s: %s",
            session_id,
            type(exc).__name__,
            exc,
        )
        return
    if not stored:
        logger.warning(
            "messages were added to session %r, but its reduced history was not stored: "
            "concurrent writers changed the session on each of %d attempts; it stays "
            "unreduced until a later add",
            session_id,
            _REDUCE_ATTEMPTS,
        )


async def reduce_stored(
    provider: ChatHistoryProvider, session_id: str, reducer: ChatReducer
) -> bool:
    """Apply `reducer` to the stored history: drop from it, or replace it when it changed.

    Returns False when the history changed under every attempt to replace it (it is then
    left as it was), True otherwise.
    """
    for _ in range(_REDUCE_ATTEMPTS):
        stored = await decoded(provider, session_id, None, "add_messages")
        reduced = await reducer.reduce(stored)
        kept = {message.id for message in reduced}
        stored_ids = [message.id for message in stored]
        if [i for i in stored_ids if i in kept] == [m.id for m in reduced]:
            dropped = [i for i in stored_ids if i not in kept]
            if dropped:
                remove = functools.partial(provider._remove, session_id, dropped)
                await provider._io("add_messages", remove)
            return True
        records = [StoredRecord.of(message) for message in reduced]
        expected = stored_ids[-1] if stored_ids else None
        replace = functools.partial(
            provider._replace, session_id, records, expected_last_id=expected
        )
        if await provider._io("add_messages", replace):
            return True
    return False
