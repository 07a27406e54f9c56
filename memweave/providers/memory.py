"""`InMemoryChatHistoryProvider`: histories kept in this process's memory."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from memweave._codec import OnCorrupt
from memweave.providers._limits import MEMORY_LIMIT
from memweave.providers._namespace import ANY, check_namespace
from memweave.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ChatHistoryProvider,
    DeleteOutcome,
    PageRow,
    ReduceOn,
    SessionInfo,
    StoredRecord,
    trim_count,
)
from memweave.reducers.base import ChatReducer

__all__ = ["InMemoryChatHistoryProvider"]


@dataclass(slots=True)
class _Session:
    records: list[StoredRecord] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    """A rising number per record, parallel to `records`, so a page finds its cursor by
    bisection instead of a scan."""
    seq_of: dict[str, int] = field(default_factory=dict)
    system_seqs: list[int] = field(default_factory=list)
    """The numbers of the system records, so a windowed read finds them without a scan."""
    next_seq: int = 0
    expires_at: float | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def add(self, record: StoredRecord) -> bool:
        if record.id in self.seq_of:
            return False
        self.records.append(record)
        self.seqs.append(self.next_seq)
        self.seq_of[record.id] = self.next_seq
        if record.role == "system":
            self.system_seqs.append(self.next_seq)
        self.next_seq += 1
        return True

    def drop(self, doomed: set[int]) -> None:
        """Delete the records at these positions."""
        gone = {self.seqs[at] for at in doomed}
        for at in doomed:
            del self.seq_of[self.records[at].id]
        self.records = [r for i, r in enumerate(self.records) if i not in doomed]
        self.seqs = [q for i, q in enumerate(self.seqs) if i not in doomed]
        self.system_seqs = [q for q in self.system_seqs if q not in gone]

    def drop_head(self, n: int) -> None:
        for record in self.records[:n]:
            del self.seq_of[record.id]
        del self.records[:n]
        del self.seqs[:n]
        first = self.seqs[0] if self.seqs else self.next_seq
        del self.system_seqs[: bisect.bisect_left(self.system_seqs, first)]

    def system_records(self) -> list[StoredRecord]:
        return [self.records[bisect.bisect_left(self.seqs, q)] for q in self.system_seqs]

    def position(self, message_id: str) -> int | None:
        seq = self.seq_of.get(message_id)
        return None if seq is None else bisect.bisect_left(self.seqs, seq)

    def tool_run_end(self, at: int) -> int:
        """The position just past the run of tool records directly after `at`."""
        end = at + 1
        while end < len(self.records) and self.records[end].role == "tool":
            end += 1
        return end


class InMemoryChatHistoryProvider(ChatHistoryProvider):
    """Process-local, thread- and task-safe history store; everything is lost on exit.

    Messages are kept in their encoded form, so mutating a message's `metadata` or content
    list after `add_messages` never changes the stored history. Fast enough to be the default
    in tests and short-lived agents. One message's stored form may take up to 64 MiB (a
    guard chosen here, not a limit of Python); a larger one raises `MessageTooLarge`.

    Works in any event loop, and in several at once (consecutive `asyncio.run` calls, threads
    each running a loop): it holds no connections, and one thread lock guards its sessions.
    With no I/O to wait for or to fail, `timeout` and `retries` are checked and kept (so a
    URL or configuration written for any backend works here) but never come into play; so
    is `namespace` (any non-empty str), since each provider's data is its own anyway.

    Example:
        ```python
        async with InMemoryChatHistoryProvider(max_messages=100) as history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    _timeout_scope = "none"

    def __init__(
        self,
        *,
        namespace: str | None = None,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.namespace = check_namespace(namespace, ANY, owner=type(self).__name__)
        """The namespace given (default `memweave`); it stores nothing apart here."""
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
            timeout=timeout,
            retries=retries,
        )
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _live(self, session_id: str) -> _Session | None:
        session = self._sessions.get(session_id)
        expires_at = session.expires_at if session is not None else None
        if expires_at is not None and expires_at <= time.monotonic():
            del self._sessions[session_id]
            return None
        return session

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                if not records:
                    return
                session = self._sessions.setdefault(session_id, _Session())
            added = [session.add(record) for record in records]
            if any(added):
                session.updated_at = time.time()
            if max_messages is not None and len(session.records) > max_messages:
                session.drop_head(trim_count([r.role for r in session.records], max_messages))
            if ttl is not None:
                session.expires_at = time.monotonic() + ttl.total_seconds()
            if not session.records:
                del self._sessions[session_id]

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return []
            records = session.records if limit is None else session.records[-limit:]
            return [record.data for record in records]

    async def _read_system(self, session_id: str) -> list[bytes]:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return []
            return [record.data for record in session.system_records()]

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return None if (after or before) is not None else []
            if before is not None:
                end = session.position(before)
                if end is None:
                    return None
                start = max(0, end - limit)
            else:
                start = 0
                if after is not None:
                    at = session.position(after)
                    if at is None:
                        return None
                    start = at + 1
                end = start + limit
            return [(r.id, r.data) for r in session.records[start:end]]

    async def _count(self, session_id: str) -> int:
        with self._lock:
            session = self._live(session_id)
            return 0 if session is None else len(session.records)

    async def _session_info(self, session_id: str) -> SessionInfo | None:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return None
            return SessionInfo(
                id=session_id,
                message_count=len(session.records),
                created_at=datetime.fromtimestamp(session.created_at, UTC),
                updated_at=datetime.fromtimestamp(session.updated_at, UTC),
            )

    async def _clear(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        with self._lock:
            found = sorted(
                session_id
                for session_id in list(self._sessions)
                if (prefix is None or session_id.startswith(prefix))
                and (after is None or session_id > after)
                and self._live(session_id) is not None
            )
            return found if limit is None else found[:limit]

    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return DeleteOutcome(0)
            named = {at for i in message_ids if (at := session.position(i)) is not None}
            doomed: set[int] = set()
            for at in sorted(named):
                if session.records[at].role != "tool":
                    doomed.update(range(at, session.tool_run_end(at)))
            for at in sorted(named - doomed):
                return DeleteOutcome(0, orphan=session.records[at].id)
            if not doomed:
                return DeleteOutcome(0)
            session.drop(doomed)
            session.updated_at = time.time()
            if not session.records:
                del self._sessions[session_id]
            return DeleteOutcome(len(doomed))

    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        with self._lock:
            session = self._live(session_id)
            at = None if session is None else session.position(message_id)
            if session is None or at is None:
                return None
            end = session.tool_run_end(at)
            doomed = set(range(end, len(session.records)))
            if doomed:
                session.drop(doomed)
                session.updated_at = time.time()
            return len(doomed)

    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        # No server to keep free here: one pass under the lock is the bounded step.
        with self._lock:
            cutoff = time.time() - older_than.total_seconds()
            stale = [
                session_id
                for session_id in list(self._sessions)
                if (session := self._live(session_id)) is not None and session.updated_at < cutoff
            ]
            if not dry_run:
                for session_id in stale:
                    del self._sessions[session_id]
            return len(stale)

    async def _purge_expired(self) -> int:
        with self._lock:
            before = len(self._sessions)
            for session_id in list(self._sessions):
                self._live(session_id)
            return before - len(self._sessions)

    async def _max_record_bytes(self) -> int:
        return MEMORY_LIMIT

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return
            doomed = {at for i in message_ids if (at := session.position(i)) is not None}
            session.drop(doomed)
            if not session.records:
                del self._sessions[session_id]

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        with self._lock:
            session = self._live(session_id)
            last = session.records[-1].id if session and session.records else None
            if last != expected_last_id:
                return False
            if not records:
                self._sessions.pop(session_id, None)
                return True
            if session is None:
                session = self._sessions.setdefault(session_id, _Session())
            session.drop_head(len(session.records))
            for record in records:
                session.add(record)
            session.updated_at = time.time()
            return True
