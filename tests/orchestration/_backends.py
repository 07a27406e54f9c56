"""A `make_history` fixture over real backends (a SQLite file and the shared Redis), for the
streaming and agent-as-tool tests, and a byte-level view of what a history stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memweave._codec import encode
from memweave.messages import ChatMessage
from memweave.orchestration import PARENT_KEY
from memweave.providers import from_url
from memweave.providers.base import ChatHistoryProvider
from tests.orchestration._builders import redis_prefix_cleanup

MakeHistory = Callable[[str], ChatHistoryProvider]
"""Builds a history on the test's backend; each name is a separate namespace (file or prefix)."""

FIXED = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.xdist_group("redis"))])
async def make_history(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeHistory]:
    """A factory of histories on SQLite (a temp file per name) or Redis (a fresh key prefix per
    name, deleted afterwards)."""
    redis_url: str | None = (
        request.getfixturevalue("redis_url") if request.param == "redis" else None
    )
    base = f"mwt-{uuid.uuid4().hex[:12]}"
    made: list[tuple[str, ChatHistoryProvider]] = []

    def make(name: str) -> ChatHistoryProvider:
        if redis_url is None:
            history = from_url(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        else:
            history = from_url(redis_url, namespace=f"{base}-{name}")
        made.append((name, history))
        return history

    yield make
    for name, history in made:
        await history.aclose()
        if redis_url is not None:
            await redis_prefix_cleanup(redis_url, f"{base}-{name}")


def runtime_made(message: ChatMessage) -> bool:
    """Whether memweave stamped `message`'s `created_at` during the run (tool results and the
    first message of a sub-session); scripted messages carry fixed ones."""
    return message.role == "tool" or PARENT_KEY in message.metadata


async def stored_bytes(history: ChatHistoryProvider) -> dict[str, list[bytes]]:
    """Every session of `history`, as the stored JSON of its messages, in order. The clock time
    memweave stamped on the messages it made is replaced by a fixed one; ids are compared as
    they are."""
    out: dict[str, list[bytes]] = {}
    for session_id in await history.list_sessions():
        messages = await history.list_messages(session_id)
        out[session_id] = [
            encode(m.model_copy(update={"created_at": FIXED}) if runtime_made(m) else m)
            for m in messages
        ]
    return out
