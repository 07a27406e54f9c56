"""The primitives a history backend implements: one `_`-prefixed method per public call of
`ChatHistoryProvider`, each carrying that call's atomicity (one Redis script, one SQL
transaction, one lock), plus the defaults a backend may override."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta

from memweave._codec import decode_many, encode
from memweave.providers._limits import UNLIMITED
from memweave.providers._records import DeleteOutcome, PageRow, SessionInfo, StoredRecord

__all__ = ["BATCH_SIZE", "HistoryPrimitives"]

BATCH_SIZE = 500
"""Sessions a backend touches per step of `prune` and `purge_expired` (bounded work per
statement or script, so a sweep never holds a server busy)."""


class HistoryPrimitives(ABC):
    """What `ChatHistoryProvider` asks of a backend. The base validates and encodes; these
    get session ids and records already checked, and run with errors translated by
    `_map_errors`, within the provider's `timeout`, retried where the call is idempotent."""

    def _map_errors(self) -> contextlib.AbstractContextManager[None]:
        """Translate driver exceptions into memweave errors; backends override this."""
        return contextlib.nullcontext()

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
    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        """Return ids of live sessions starting literally with `prefix` and sorting strictly
        after `after` (code point order), at most `limit` of them (None: all).

        Return the smallest such ids (any order; the base sorts). The cost must follow
        `limit`, not the number of sessions, wherever the store can order ids.
        """

    @abstractmethod
    async def _session_info(self, session_id: str) -> SessionInfo | None:
        """Return the live session's count and times, or None when it is unknown or expired."""

    @abstractmethod
    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        """Return up to `limit` (>= 1) stored entries as `(message id, data)`, oldest first.

        At most one of `after` and `before` is given. Neither: the oldest `limit` entries.
        `after=id`: the `limit` entries just newer than that message. `before=id`: the
        `limit` entries just older than it. Returns None when the cursor id is not stored in
        the live session. The cost must follow `limit`, not the session length.
        """

    @abstractmethod
    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        """Atomically delete the entries with these ids plus, for each deleted entry that is
        not a tool result, the run of tool results directly after it.

        Unknown ids are ignored. When a named tool result would stay orphaned (the nearest
        older non-tool entry is not deleted), delete nothing and return it as `orphan`.
        Renews `updated_at` when something was deleted; a session left empty is gone.
        """

    @abstractmethod
    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        """Atomically delete every entry newer than `message_id`, except the run of tool
        results directly after it; return how many went, or None when `message_id` is not
        stored in the live session. Renews `updated_at` when something was deleted."""

    @abstractmethod
    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        """Delete (or with `dry_run` only count) the live sessions whose `updated_at` is older
        than `older_than` before now on the store's clock, `BATCH_SIZE` per step; return how
        many. A session whose time was not recorded counts as updated when first seen here."""

    async def _max_record_bytes(self) -> int:
        """The most bytes one message's stored form may take on this store.

        Asked once per provider, on its first `add_messages` (a backend whose limit is a
        server setting reads it then); a bigger message raises `MessageTooLarge` before
        anything is sent. This default states no limit.
        """
        return UNLIMITED

    async def _purge_expired(self) -> int:
        """Delete what is left of expired sessions, `BATCH_SIZE` per step; return how many.

        This default does nothing, for stores that expire data by themselves."""
        return 0

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

    async def _aclose(self) -> None:  # noqa: B027 - optional: a backend may hold nothing
        """Release resources; called once by `aclose`."""
