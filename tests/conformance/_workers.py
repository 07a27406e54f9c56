"""Functions run in other OS processes by the concurrency tests (importable under spawn)."""

from __future__ import annotations

import asyncio
import time

from memweave import ChatMessage
from memweave.providers import from_url


async def _append_own(url: str, session_id: str, worker: int, count: int, start_at: float) -> None:
    history = from_url(url)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for i in range(count):
            await history.add_messages(
                session_id, [ChatMessage.user(f"w{worker}-{i}", id=f"w{worker}-{i}")]
            )
    finally:
        await history.aclose()


async def _append_shared(url: str, session_id: str, count: int, start_at: float) -> None:
    history = from_url(url)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for i in range(count):
            await history.add_messages(session_id, [ChatMessage.user(f"same-{i}", id=f"same-{i}")])
    finally:
        await history.aclose()


def append_own(url: str, session_id: str, worker: int, count: int, start_at: float) -> None:
    """Append `count` messages with ids unique to `worker`, one per call."""
    asyncio.run(_append_own(url, session_id, worker, count, start_at))


def append_shared(url: str, session_id: str, count: int, start_at: float) -> None:
    """Append the same `count` messages (same ids) that every other worker appends."""
    asyncio.run(_append_shared(url, session_id, count, start_at))
