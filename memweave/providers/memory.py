"""`InMemoryChatHistoryProvider`: histories kept in this process's memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from memweave._codec import OnCorrupt
from memweave.providers.base import ChatHistoryProvider, ReduceOn, StoredRecord, trim_count
from memweave.reducers.base import ChatReducer

__all__ = ["InMemoryChatHistoryProvider"]


@dataclass(slots=True)
class _Session:
    records: list[StoredRecord] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    expires_at: float | None = None


class InMemoryChatHistoryProvider(ChatHistoryProvider):
    """Process-local, thread- and task-safe history store; everything is lost on exit.

    Messages are kept in their encoded form, so mutating a message's `metadata` or content
    list after `add_messages` never changes the stored history. Fast enough to be the default
    in tests and short-lived agents.

    Example:
        ```python
        async with InMemoryChatHistoryProvider(max_messages=100) as history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
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
            for record in records:
                if record.id not in session.ids:
                    session.ids.add(record.id)
                    session.records.append(record)
            if max_messages is not None and len(session.records) > max_messages:
                drop = trim_count([r.role for r in session.records], max_messages)
                for record in session.records[:drop]:
                    session.ids.discard(record.id)
                del session.records[:drop]
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
            return [record.data for record in session.records if record.role == "system"]

    async def _count(self, session_id: str) -> int:
        with self._lock:
            session = self._live(session_id)
            return 0 if session is None else len(session.records)

    async def _clear(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    async def _list_sessions(self, prefix: str | None) -> list[str]:
        with self._lock:
            return [
                session_id
                for session_id in list(self._sessions)
                if (prefix is None or session_id.startswith(prefix))
                and self._live(session_id) is not None
            ]

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        doomed = set(message_ids)
        with self._lock:
            session = self._live(session_id)
            if session is None:
                return
            session.records = [r for r in session.records if r.id not in doomed]
            session.ids -= doomed
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
            session.records = list(records)
            session.ids = {record.id for record in records}
            return True
