"""Retention: `max_messages` keeps the newest N without orphaning tool results; `ttl` expires."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from memweave import ChatMessage, ConfigurationError
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts, tool_pair
from tests.conformance._harness import BackendHarness


async def test_max_messages_keeps_newest(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`max_messages` keeps the newest N messages in order."""
    history = make_history(max_messages=5)
    messages = make_messages(12)
    for message in messages:
        await history.add_messages(session_id, [message])
    assert texts(await history.list_messages(session_id)) == texts(messages[-5:])
    assert await history.count_messages(session_id) == 5


async def test_max_messages_trims_within_one_batch(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A batch larger than `max_messages` leaves only its newest N."""
    history = make_history(max_messages=3)
    messages = make_messages(10)
    await history.add_messages(session_id, messages)
    assert texts(await history.list_messages(session_id)) == texts(messages[-3:])


async def test_max_messages_drops_orphaned_tool_results(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A tool result whose assistant tool call was trimmed goes too."""
    history = make_history(max_messages=4)
    pair = tool_pair(3)  # assistant + 3 results
    await history.add_messages(session_id, [ChatMessage.user("q"), *pair, ChatMessage.user("next")])
    stored = await history.list_messages(session_id)
    # Keeping the newest 4 would start on a tool result; all orphans are dropped.
    assert [m.role for m in stored] == ["user"]
    assert stored[0].text == "next"


async def test_max_messages_keeps_whole_tool_group_when_it_fits(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """When the cut falls before a tool call, the call and its results are kept together."""
    history = make_history(max_messages=4)
    pair = tool_pair(2)
    await history.add_messages(session_id, [ChatMessage.user("old"), ChatMessage.user("q"), *pair])
    stored = await history.list_messages(session_id)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "tool"]
    assert stored[0].text == "q"


async def test_max_messages_never_starts_with_tool_result(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """Over many appends with tool groups, the stored head is never a tool result."""
    history = make_history(max_messages=5)
    for round_ in range(8):
        await history.add_messages(
            session_id, [ChatMessage.user(f"u{round_}"), *tool_pair(round_ % 3 + 1)]
        )
        stored = await history.list_messages(session_id)
        assert stored[0].role != "tool"
        assert len(stored) <= 5


async def test_ttl_expired_session_reads_empty_and_is_not_listed(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    session_id: str,
) -> None:
    """An expired session reads as empty, counts zero and is not listed."""
    history = make_history(ttl=timedelta(hours=1))
    await history.add_messages(session_id, make_messages(3))
    assert await history.count_messages(session_id) == 3
    await harness.expire_now(history, session_id)
    assert await history.list_messages(session_id) == []
    assert await history.count_messages(session_id) == 0
    assert session_id not in await history.list_sessions()


async def test_ttl_add_after_expiry_starts_fresh(
    make_history: Callable[..., ChatHistoryProvider],
    harness: BackendHarness,
    session_id: str,
) -> None:
    """Adding to an expired session starts it empty: expired messages never come back."""
    history = make_history(ttl=timedelta(hours=1))
    await history.add_messages(session_id, make_messages(3, text="old"))
    await harness.expire_now(history, session_id)
    await history.add_messages(session_id, make_messages(1, text="new"))
    assert texts(await history.list_messages(session_id)) == ["new 0"]


async def test_ttl_really_expires(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """A short ttl runs out on the backend's own clock."""
    import asyncio

    history = make_history(ttl=timedelta(milliseconds=1500))
    await history.add_messages(session_id, make_messages(2))
    assert await history.count_messages(session_id) == 2
    await asyncio.sleep(2.0)
    assert await history.count_messages(session_id) == 0


async def test_ttl_is_sliding(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """Each add renews the ttl."""
    import asyncio

    history = make_history(ttl=timedelta(milliseconds=2500))
    await history.add_messages(session_id, make_messages(1, text="a"))
    await asyncio.sleep(1.5)
    await history.add_messages(session_id, make_messages(1, text="b"))
    await asyncio.sleep(1.5)
    assert texts(await history.list_messages(session_id)) == ["a 0", "b 0"]


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages": 0},
        {"max_messages": -3},
        {"max_messages": "10"},
        {"ttl": timedelta(0)},
        {"ttl": 30},
        {"on_corrupt": "ignore"},
        {"reduce_on": "sometimes"},
    ],
)
def test_options_out_of_range_raise(
    make_history: Callable[..., ChatHistoryProvider], options: dict[str, object]
) -> None:
    """Bad retention options raise `ConfigurationError` naming the option."""
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        make_history(**options)
