"""Logic `ChatHistoryProvider` shares across backends, checked on the in-memory backend: where a
corrupt entry is reported, and how a write-mode reduce that fails after the append behaves."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from memweave import ChatMessage, ChatReducer, CorruptRecord, InMemoryChatHistoryProvider
from memweave.errors import ConfigurationError, MemweaveError, ModelError
from memweave.providers import StoredRecord
from memweave.reducers import MessageCountReducer

GARBAGE = b"not json at all"


def texts(messages: Sequence[ChatMessage]) -> list[str]:
    return [message.text for message in messages]


def chat(n: int, text: str = "message") -> list[ChatMessage]:
    return [ChatMessage.user(f"{text} {i}") for i in range(n)]


def write_raw(history: InMemoryChatHistoryProvider, session_id: str, role: str) -> None:
    """Append a garbage entry with this role to the session."""
    from memweave.providers.memory import _Session

    session = history._sessions.setdefault(session_id, _Session())
    session.add(StoredRecord(f"raw-{len(session.records)}", role, GARBAGE))


class CountingProvider(InMemoryChatHistoryProvider):
    """Counts `_count` calls."""

    counts = 0

    async def _count(self, session_id: str) -> int:
        self.counts += 1
        return await super()._count(session_id)


class Contended(InMemoryChatHistoryProvider):
    """Every conditional replace loses, as if another writer always appended first."""

    async def _replace(
        self, session_id: str, records: Sequence[StoredRecord], *, expected_last_id: str | None
    ) -> bool:
        return False


class Fold(ChatReducer):
    """Replaces all but the newest message with one system message (a rewrite, not a cut)."""

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if len(messages) <= 1:
            return list(messages)
        return [ChatMessage.system("folded", id=f"fold-{messages[-2].id}"), messages[-1]]


class Raising(ChatReducer):
    """Fails with the exception it was given."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        raise self.error


class FailsOnce(ChatReducer):
    """Fails its first call with a `ModelError`, then keeps the newest two messages."""

    def __init__(self) -> None:
        self.calls = 0

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        self.calls += 1
        if self.calls == 1:
            raise ModelError("down")
        return list(messages[-2:])


async def test_limit_read_pays_for_count_only_when_corrupt() -> None:
    """A clean `limit` read never counts the session; a corrupt one counts it once to name the
    entry's session position."""
    history = CountingProvider()
    await history.add_messages("s", chat(10))
    assert len(await history.list_messages("s", limit=3)) == 3
    assert history.counts == 0
    write_raw(history, "s", "user")
    await history.add_messages("s", chat(2, "after"))
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages("s", limit=3)
    assert info.value.position == 10
    assert history.counts == 1


async def test_limit_read_covering_whole_session_reports_position() -> None:
    """A `limit` larger than the session reads it all; positions count from its oldest entry."""
    history = CountingProvider()
    await history.add_messages("s", chat(2))
    write_raw(history, "s", "user")
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages("s", limit=50)
    assert info.value.position == 2
    assert history.counts == 0


async def test_reduced_read_reports_corrupt_system_entry_at_session_position() -> None:
    """A corrupt system entry older than the tail read by a reduced view is named by its
    position in the session, not among the system entries."""
    history = InMemoryChatHistoryProvider(reducer=MessageCountReducer(3), reduce_on="read")
    await history.add_messages("s", [ChatMessage.system("rules"), *chat(5)])
    write_raw(history, "s", "system")
    await history.add_messages("s", chat(100, "after"))
    with pytest.raises(CorruptRecord) as info:
        await history.list_messages("s")
    assert info.value.position == 6


async def test_reduced_read_skips_corrupt_system_entry_with_session_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `on_corrupt="skip"`, a corrupt system entry is skipped and its warning names its
    position in the session."""
    history = InMemoryChatHistoryProvider(
        reducer=MessageCountReducer(3), reduce_on="read", on_corrupt="skip"
    )
    await history.add_messages("s", [ChatMessage.system("rules"), *chat(5)])
    write_raw(history, "s", "system")
    await history.add_messages("s", chat(100, "after"))
    with caplog.at_level(logging.WARNING):
        messages = await history.list_messages("s")
    assert texts(messages) == ["rules", "after 98", "after 99"]
    assert "position 6:" in caplog.text


async def test_add_messages_on_write_under_contention_stores_append_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the reduced history cannot be stored for concurrent writers, the add still returns
    normally (its append is stored), the history stays unreduced, and a warning says so."""
    history = Contended(reducer=Fold(), reduce_on="write")
    messages = chat(3)
    with caplog.at_level(logging.WARNING, logger="memweave.providers"):
        await history.add_messages("s", messages)
    assert await history.list_messages("s") == messages
    assert "concurrent" in caplog.text


@pytest.mark.parametrize(
    "error",
    [CorruptRecord("s", 0, "bad"), ModelError("down"), ConfigurationError("bad setup")],
)
async def test_add_messages_on_write_keeps_append_when_reduce_fails(
    error: MemweaveError, caplog: pytest.LogCaptureFixture
) -> None:
    """A memweave error from the write-mode reduce is logged; the append stays stored and the
    add returns normally."""
    history = InMemoryChatHistoryProvider(reducer=Raising(error), reduce_on="write")
    with caplog.at_level(logging.WARNING, logger="memweave.providers"):
        await history.add_messages("s", chat(2))
    assert texts(await history.list_messages("s")) == ["message 0", "message 1"]
    assert str(error) in caplog.text


async def test_add_messages_on_write_propagates_reducer_bug() -> None:
    """An exception outside the memweave hierarchy (a bug in a custom reducer) propagates."""
    history = InMemoryChatHistoryProvider(reducer=Raising(ZeroDivisionError()), reduce_on="write")
    with pytest.raises(ZeroDivisionError):
        await history.add_messages("s", chat(1))
    assert await history.count_messages("s") == 1


async def test_add_messages_on_write_reduces_again_on_later_add() -> None:
    """A history left unreduced by a failed reduce is reduced by the next add."""
    history = InMemoryChatHistoryProvider(reducer=FailsOnce(), reduce_on="write")
    await history.add_messages("s", chat(3))
    assert await history.count_messages("s") == 3
    await history.add_messages("s", chat(1, "after"))
    assert texts(await history.list_messages("s")) == ["message 2", "after 0"]
