"""Closed means closed: every method after `aclose()` raises `ProviderClosed`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from memweave.errors import MemweaveError, ProviderClosed
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages

CALLS: dict[str, Callable[[ChatHistoryProvider, str], Awaitable[Any]]] = {
    "add_messages": lambda h, s: h.add_messages(s, make_messages(1)),
    "list_messages": lambda h, s: h.list_messages(s),
    "count_messages": lambda h, s: h.count_messages(s),
    "delete_messages": lambda h, s: h.delete_messages(s, ["x"]),
    "truncate_after": lambda h, s: h.truncate_after(s, "x"),
    "clear": lambda h, s: h.clear(s),
    "list_sessions": lambda h, s: h.list_sessions(limit=5),
    "session_info": lambda h, s: h.session_info(s),
    "prune": lambda h, s: h.prune(timedelta(days=3650), dry_run=True),
    "purge_expired": lambda h, s: h.purge_expired(),
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_method_after_aclose_raises_provider_closed(
    make_history: Callable[..., ChatHistoryProvider], session_id: str, method: str
) -> None:
    """Every method called after `aclose()` raises `ProviderClosed`, a `MemweaveError`."""
    history = make_history()
    await history.add_messages(session_id, make_messages(2))
    await history.aclose()
    with pytest.raises(ProviderClosed) as raised:
        await CALLS[method](history, session_id)
    assert isinstance(raised.value, MemweaveError)
    assert raised.value.method == method
    assert history.closed


async def test_iter_messages_after_aclose_raises_at_the_call(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`iter_messages` on a closed provider raises `ProviderClosed` at the call."""
    history = make_history()
    await history.aclose()
    with pytest.raises(ProviderClosed):
        history.iter_messages(session_id)


async def test_async_with_then_call_raises_provider_closed(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """Leaving `async with` closes the provider for good."""
    async with make_history() as history:
        await history.add_messages(session_id, make_messages(1))
    with pytest.raises(ProviderClosed):
        await history.count_messages(session_id)
