"""Conformance harness for `InMemoryChatHistoryProvider`."""

from __future__ import annotations

import time
from typing import Any

import pytest

from memweave.providers import ChatHistoryProvider, InMemoryChatHistoryProvider, StoredRecord

__all__ = ["memory_harness"]


class MemoryHarness:
    """Builds in-memory providers; pokes their private session table for raw writes."""

    name = "memory"
    url = "memory://"

    def make(self, **options: Any) -> ChatHistoryProvider:
        return InMemoryChatHistoryProvider(**options)

    def isolated_options(self) -> dict[str, Any]:
        return {}

    async def drop_isolated(self, history: ChatHistoryProvider) -> None:
        """A new in-memory provider shares nothing; nothing to drop."""

    async def write_raw(self, history: ChatHistoryProvider, session_id: str, data: bytes) -> None:
        assert isinstance(history, InMemoryChatHistoryProvider)
        from memweave.providers.memory import _Session

        session = history._sessions.setdefault(session_id, _Session())
        session.add(StoredRecord(f"raw-{len(session.records)}", "user", data))

    async def expire_now(self, history: ChatHistoryProvider, session_id: str) -> None:
        assert isinstance(history, InMemoryChatHistoryProvider)
        history._sessions[session_id].expires_at = time.monotonic() - 1


@pytest.fixture(scope="session")
def memory_harness() -> MemoryHarness:
    """The in-memory backend."""
    return MemoryHarness()


HARNESSES = [
    (
        "memory_harness",
        {
            "multi_process": "in-memory history lives in one process; other processes see nothing",
            "durable": "in-memory history lives in its provider object and ends with it",
        },
    )
]
