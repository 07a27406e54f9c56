"""Lifecycle of a blocking object: `with` binds it, `close()` releases everything on the
portal loop, and calls afterwards raise `ProviderClosed`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memweave import ChatMessage, sync
from memweave._portal import portal
from memweave.errors import InvalidArgument, ProviderClosed
from memweave.providers import InMemoryChatHistoryProvider
from tests.conformance._harness import BackendHarness


class RecordingProvider(InMemoryChatHistoryProvider):
    """An in-memory provider that records the thread its `aclose` ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_on: list[threading.Thread] = []

    async def _aclose(self) -> None:
        self.closed_on.append(threading.current_thread())


def test_with_binds_the_provider_and_closes_it(
    make_sync_history: Callable[..., sync.ChatHistoryProvider], session_id: str
) -> None:
    """`with provider as p` binds the provider itself and closes it on the way out."""
    history = make_sync_history()
    with history as bound:
        assert bound is history
        bound.add_messages(session_id, [ChatMessage.user("hi")])
        assert bound.count_messages(session_id) == 1
    assert history.closed
    with pytest.raises(ProviderClosed) as raised:
        history.count_messages(session_id)
    assert raised.value.method == "count_messages"


def test_close_is_idempotent_and_runs_aclose_once_on_the_portal() -> None:
    """`close()` runs the async `aclose()` once, on the portal's thread."""
    provider = RecordingProvider()
    history = sync.ChatHistoryProvider(provider)
    history.close()
    history.close()
    assert provider.closed_on == [portal().thread]
    assert provider.closed


def test_wrapping_refuses_what_is_not_a_provider() -> None:
    """The generic blocking provider takes only an async `ChatHistoryProvider`."""
    with pytest.raises(InvalidArgument, match="provider"):
        sync.ChatHistoryProvider("memory://")  # type: ignore[arg-type]


def test_from_url_returns_the_backends_blocking_class(
    make_sync_history: Callable[..., sync.ChatHistoryProvider], harness: BackendHarness
) -> None:
    """`from_url` returns the blocking class of the URL's backend, with its options."""
    history = make_sync_history(max_messages=7)
    expected = {
        "memory": sync.InMemoryChatHistoryProvider,
        "sqlite": sync.SQLChatHistoryProvider,
        "postgres": sync.SQLChatHistoryProvider,
        "mysql": sync.SQLChatHistoryProvider,
        "redis": sync.RedisChatHistoryProvider,
    }[harness.name]
    assert type(history) is expected
    assert history.max_messages == 7


def test_iterator_left_early_is_closed(
    sync_history: sync.ChatHistoryProvider, session_id: str
) -> None:
    """Leaving an `iter_messages` loop early and closing the iterator stops the read; the
    provider goes on working."""
    sync_history.add_messages(session_id, [ChatMessage.user(str(n)) for n in range(10)])
    messages = sync_history.iter_messages(session_id, page_size=3)
    assert next(messages).text == "0"
    messages.close()  # type: ignore[attr-defined]
    with pytest.raises(StopIteration):
        next(messages)
    assert sync_history.count_messages(session_id) == 10


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_close_releases_the_sqlite_connections(tmp_path: Path) -> None:
    """Closing a SQLite provider ends the connection threads it opened."""
    before = _threads()
    history = sync.SQLChatHistoryProvider(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    for n in range(4):
        history.add_messages(f"s{n}", [ChatMessage.user("hi")])
    assert _threads() - before - {portal().thread}
    history.close()
    deadline = time.monotonic() + 10
    while _threads() - before - {portal().thread} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _threads() - before - {portal().thread}
