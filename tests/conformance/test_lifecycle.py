"""Lifecycle: `async with` binds the provider, `aclose()` is idempotent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages


async def test_async_with_binds_provider(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`async with provider as p` binds the provider itself."""
    history = make_history()
    async with history as bound:
        assert bound is history
        await bound.add_messages(session_id, make_messages(1))
        assert await bound.count_messages(session_id) == 1


async def test_aclose_is_idempotent(make_history: Callable[..., ChatHistoryProvider]) -> None:
    """Calling `aclose()` twice is harmless."""
    history = make_history()
    await history.aclose()
    await history.aclose()


@pytest.mark.rule("durable")
async def test_new_provider_reads_what_another_stored(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A provider built anew on the same store reads what a closed one stored."""
    writer = make_history()
    await writer.add_messages(session_id, make_messages(4))
    await writer.aclose()
    reader = make_history()
    assert await reader.count_messages(session_id) == 4
