"""`ChatHistoryProvider`: the contract every history backend keeps, and the logic they share.

The public methods validate and encode once, here; each then calls one `_`-prefixed primitive
that a backend implements and that carries the atomicity (one Redis script, one SQL
transaction, one lock).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from memweave._closing import AsyncCloseable
from memweave._codec import OnCorrupt, decode_many, encode
from memweave.errors import ConfigurationError, CorruptRecord, InvalidArgument, MemweaveError
from memweave.messages import ChatMessage, validate_messages
from memweave.reducers.base import ChatReducer
from memweave.session import validate_session_id

__all__ = ["ChatHistoryProvider", "ReduceOn", "StoredRecord"]

ReduceOn = Literal["read", "write"]

_FIRST_PAGE = 64
_REDUCE_ATTEMPTS = 8

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One encoded message as handed to a backend primitive."""

    id: str
    """The message id; a backend stores a given id at most once per session."""
    role: str
    """The message role, so trimming can tell tool results without decoding."""
    data: bytes
    """The versioned JSON of the message (see `memweave._codec`)."""

    @classmethod
    def of(cls, message: ChatMessage) -> StoredRecord:
        """Encode `message`."""
        return cls(message.id, message.role, encode(message))


def dedupe_batch(records: Iterable[StoredRecord]) -> list[StoredRecord]:
    """Keep the first record of each message id in a batch, in order."""
    seen: set[str] = set()
    out: list[StoredRecord] = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            out.append(record)
    return out


def trim_count(roles_oldest_first: Sequence[str], max_messages: int) -> int:
    """How many entries to drop from the head so at most `max_messages` remain.

    Tool results left at the head after the cut go too, because the assistant message that
    called them was dropped.
    """
    drop = max(0, len(roles_oldest_first) - max_messages)
    while drop < len(roles_oldest_first) and roles_oldest_first[drop] == "tool":
        drop += 1
    return drop


class ChatHistoryProvider(AsyncCloseable, ABC):
    """Stores and returns the messages of many conversations, each under a session id.

    Rules every backend keeps (checked by the conformance suite in `tests/conformance`):

    - Order is append order; `list_messages(limit=N)` returns the newest N, oldest first.
    - `add_messages` is one atomic batch: if any item is invalid, nothing is stored.
    - Re-adding a message id already stored in that session stores nothing, also when two
      writers race. Messages are never deduplicated by content.
    - Sessions are isolated whatever characters their ids hold; an id that cannot be stored
      safely raises `InvalidSessionId`.
    - `max_messages` keeps the newest N, trimmed in the same atomic step as the append, and
      never leaves a tool result at the head whose tool call was trimmed.
    - `ttl` is sliding: every add renews it; an expired session reads as empty and is not listed.
    - A corrupt stored entry raises `CorruptRecord` naming its position in the session, or with
      `on_corrupt="skip"` is skipped with a warning while the rest of the session is returned.

    Args:
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages`.
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` returns a reduced view and leaves storage as it is; `"write"`
            stores the reduced history after each add (see `add_messages` for what happens
            when that reduce fails).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    """Optional capabilities of a backend, e.g. `"multi_process"` (several OS processes may
    share one store)."""

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
    ) -> None:
        if max_messages is not None and (
            isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1
        ):
            raise ConfigurationError(f"max_messages must be a positive int, got {max_messages!r}")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise ConfigurationError(f"ttl must be a positive timedelta, got {ttl!r}")
        if on_corrupt not in ("raise", "skip"):
            raise ConfigurationError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        if reduce_on not in ("read", "write"):
            raise ConfigurationError(f"reduce_on must be 'read' or 'write', got {reduce_on!r}")
        if reducer is not None and not isinstance(reducer, ChatReducer):
            raise ConfigurationError(f"reducer must be a ChatReducer, got {reducer!r}")
        self.max_messages = max_messages
        self.ttl = ttl
        self.on_corrupt: OnCorrupt = on_corrupt
        self.reducer = reducer
        self.reduce_on: ReduceOn = reduce_on
        self._closed = False

    # -- public API ---------------------------------------------------------------------------

    async def add_messages(self, session_id: str, messages: Iterable[ChatMessage]) -> None:
        """Append `messages` to the session, atomically and idempotently by message id.

        Messages whose id is already stored in this session (or repeated within the batch) are
        skipped; the others are appended in order. An empty batch still renews the `ttl`.

        With `reduce_on="write"`, the reducer then runs on the stored history and its result
        is stored, as a second step after the append has committed (a reader may see the
        unreduced history in between). A return means the append is stored, whatever the
        reduce did: when the reduce fails with a memweave error (a corrupt stored entry with
        `on_corrupt="raise"`, a failing model or server, or other writers changing the session
        on every attempt), a warning is logged and the history stays unreduced until a later
        add reduces it. An exception outside memweave's hierarchy (a bug in a custom reducer)
        propagates, after the append.

        Raises:
            InvalidSessionId: The session id cannot be stored.
            InvalidMessage: An item is not a `ChatMessage`; nothing was stored.
            BackendUnavailable: The store could not be reached.
        """
        session_id = validate_session_id(session_id)
        batch = validate_messages(messages)
        records = dedupe_batch(StoredRecord.of(message) for message in batch)
        with self._map_errors():
            await self._append(session_id, records, max_messages=self.max_messages, ttl=self.ttl)
        if self.reducer is not None and self.reduce_on == "write":
            await self._reduce_after_append(session_id, self.reducer)

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[ChatMessage]:
        """Return the session's messages, oldest first; with `limit=N`, only the newest N.

        An unknown or expired session reads as empty. With `reduce_on="read"` the reducer's view
        is returned (and `limit` applies to that view); storage is left as it is.

        Raises:
            CorruptRecord: A stored entry could not be decoded (with `on_corrupt="raise"`).
        """
        session_id = validate_session_id(session_id)
        limit = _check_limit(limit)
        if limit == 0:
            return []
        if self.reducer is not None and self.reduce_on == "read":
            messages = await self._reduced_view(session_id, self.reducer)
            return messages if limit is None else messages[-limit:]
        return await self._decoded(session_id, limit)

    async def count_messages(self, session_id: str) -> int:
        """Return how many messages are stored for the session (0 when unknown or expired)."""
        session_id = validate_session_id(session_id)
        with self._map_errors():
            return await self._count(session_id)

    async def clear(self, session_id: str) -> None:
        """Delete every message of the session. Clearing an unknown session is a no-op."""
        session_id = validate_session_id(session_id)
        with self._map_errors():
            await self._clear(session_id)

    async def list_sessions(self, *, prefix: str | None = None) -> list[str]:
        """Return the ids of sessions holding messages, sorted by code point.

        Args:
            prefix: Only ids starting with this exact string (taken literally: `%`, `_`, `*`
                and `[` match themselves).
        """
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidArgument("prefix", prefix, "must be a str or None")
        with self._map_errors():
            return sorted(await self._list_sessions(prefix or None))

    async def aclose(self) -> None:
        """Release connections this provider opened. Idempotent; a client or engine passed in
        by the caller is left open."""
        if self._closed:
            return
        self._closed = True
        with self._map_errors():
            await self._aclose()

    # -- shared helpers -----------------------------------------------------------------------

    async def _decoded(self, session_id: str, limit: int | None) -> list[ChatMessage]:
        return (await self._read_decoded(session_id, limit))[1]

    async def _read_decoded(
        self, session_id: str, limit: int | None
    ) -> tuple[int, list[ChatMessage]]:
        """Read and decode the whole session, or its newest `limit` entries.

        Returns how many entries were read (corrupt ones included) and the decoded messages.
        A corrupt entry is named by its position in the session. A partial read does not know
        where it starts, so only when it holds a corrupt entry is the session counted (the
        start is `count - len(rows)`; a writer appending between read and count shifts it).
        """
        with self._map_errors():
            rows = await self._read(session_id, limit)
        if limit is None or len(rows) < limit:
            return len(rows), decode_many(rows, session_id=session_id, on_corrupt=self.on_corrupt)
        try:
            return len(rows), decode_many(rows, session_id=session_id, on_corrupt="raise")
        except CorruptRecord as exc:
            corrupt = exc
        with self._map_errors():
            first = max(0, await self._count(session_id) - len(rows))
        if self.on_corrupt == "raise":
            raise CorruptRecord(session_id, first + corrupt.position, corrupt.reason) from None
        return len(rows), decode_many(
            rows, session_id=session_id, on_corrupt="skip", first_position=first
        )

    async def _decoded_system(self, session_id: str) -> list[ChatMessage]:
        """Decode the session's system messages; a corrupt one is named by its session position."""
        with self._map_errors():
            rows = await self._read_system(session_id)
        try:
            return decode_many(rows, session_id=session_id, on_corrupt="raise")
        except CorruptRecord:
            pass
        # The system entries are scattered through the session, so their indexes among
        # themselves are no positions. Only the whole session tells them: decode it, which
        # raises at (or skips with a warning) each corrupt entry by its position.
        return [m for m in await self._decoded(session_id, None) if m.role == "system"]

    async def _reduced_view(self, session_id: str, reducer: ChatReducer) -> list[ChatMessage]:
        """Reduce the session reading it from its end, page by page, while the reducer needs
        more; so the cost follows the kept window, not the history length."""
        page = _FIRST_PAGE
        system: list[ChatMessage] | None = None
        while True:
            read, tail = await self._read_decoded(session_id, page)
            if read < page:
                return await reducer.reduce(tail)
            if system is None:
                system = await self._decoded_system(session_id)
            in_tail = {message.id for message in tail}
            older_system = [message for message in system if message.id not in in_tail]
            reduced = await reducer.reduce_tail(older_system, tail)
            if reduced is not None:
                return reduced
            page *= 4

    async def _reduce_after_append(self, session_id: str, reducer: ChatReducer) -> None:
        """Reduce the stored history after a committed append; a failure is logged, not raised,
        because the caller's append succeeded and the next add reduces again."""
        try:
            stored = await self._reduce_stored(session_id, reducer)
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

    async def _reduce_stored(self, session_id: str, reducer: ChatReducer) -> bool:
        """Apply `reducer` to the stored history: drop from it, or replace it when it changed.

        Returns False when the history changed under every attempt to replace it (it is then
        left as it was), True otherwise.
        """
        for _ in range(_REDUCE_ATTEMPTS):
            stored = await self._decoded(session_id, None)
            reduced = await reducer.reduce(stored)
            kept = {message.id for message in reduced}
            stored_ids = [message.id for message in stored]
            if [i for i in stored_ids if i in kept] == [m.id for m in reduced]:
                dropped = [i for i in stored_ids if i not in kept]
                if dropped:
                    with self._map_errors():
                        await self._remove(session_id, dropped)
                return True
            records = [StoredRecord.of(message) for message in reduced]
            expected = stored_ids[-1] if stored_ids else None
            with self._map_errors():
                if await self._replace(session_id, records, expected_last_id=expected):
                    return True
        return False

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        """Translate driver exceptions into memweave errors; backends override this."""
        yield

    # -- backend primitives -------------------------------------------------------------------

    @abstractmethod
    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        """Atomically append the records whose ids the session lacks, trim, and renew the ttl.

        `records` hold no duplicate ids. Trimming keeps the newest `max_messages` and then
        drops tool results left at the head (see `trim_count`).
        """

    @abstractmethod
    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        """Return stored entries oldest first; with `limit`, only the newest `limit` (>= 1)."""

    @abstractmethod
    async def _count(self, session_id: str) -> int:
        """Return the number of stored entries."""

    @abstractmethod
    async def _clear(self, session_id: str) -> None:
        """Delete the session's entries (and ttl bookkeeping)."""

    @abstractmethod
    async def _list_sessions(self, prefix: str | None) -> list[str]:
        """Return ids of live sessions starting literally with `prefix`, in any order."""

    @abstractmethod
    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        """Delete the entries with these ids, atomically, leaving the others untouched."""

    @abstractmethod
    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        """Atomically replace the session's entries with `records`.

        Does nothing and returns False when the newest stored id is not `expected_last_id`
        (another writer appended meanwhile); returns True when replaced.
        """

    async def _read_system(self, session_id: str) -> list[bytes]:
        """Return the stored entries of the session's system messages, oldest first.

        This default reads the whole session; backends that can select by role override it.
        """
        with self._map_errors():
            rows = await self._read(session_id, None)
        messages = decode_many(rows, session_id=session_id, on_corrupt="skip")
        return [encode(message) for message in messages if message.role == "system"]

    async def _aclose(self) -> None:
        """Release resources; called once by `aclose`."""


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgument("limit", limit, "must be a non-negative int or None")
    return limit
