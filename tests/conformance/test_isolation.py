"""Isolation: no call on one session reads or changes another."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memweave import ChatMessage
from memweave.providers import ChatHistoryProvider
from tests.conformance._builders import make_messages, texts


async def test_sessions_are_isolated(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """Messages added to one session never appear in another."""
    first, second = new_session_id("a"), new_session_id("b")
    await history.add_messages(first, make_messages(3, text="first"))
    await history.add_messages(second, make_messages(2, text="second"))
    assert texts(await history.list_messages(first)) == ["first 0", "first 1", "first 2"]
    assert texts(await history.list_messages(second)) == ["second 0", "second 1"]


async def test_clear_leaves_other_sessions(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """Clearing a session leaves sessions whose ids extend or resemble it untouched."""
    base = new_session_id("")
    ids = [base + "app", base + "app2", base + "app:x", base + "ap*", base + "app%"]
    for session in ids:
        await history.add_messages(session, [ChatMessage.user(session)])
    await history.clear(base + "app")
    assert await history.count_messages(base + "app") == 0
    for session in ids[1:]:
        assert texts(await history.list_messages(session)) == [session]
    assert await history.list_sessions(prefix=base) == sorted(ids[1:])


async def test_clear_unknown_session_is_noop(history: ChatHistoryProvider, session_id: str) -> None:
    """Clearing an unknown session is a no-op."""
    await history.clear(session_id)
    assert await history.count_messages(session_id) == 0


async def test_list_sessions_prefix_is_literal(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """`list_sessions(prefix="a%")` matches only ids that start with the literal `a%`."""
    base = new_session_id("")
    ids = [
        base + "a%1",
        base + "a%2",
        base + "ab",
        base + "a_",
        base + "aX",
        base + "a*",
        base + "a[",
    ]
    for session in ids:
        await history.add_messages(session, [ChatMessage.user("x")])
    assert await history.list_sessions(prefix=base + "a%") == [base + "a%1", base + "a%2"]
    assert await history.list_sessions(prefix=base + "a_") == [base + "a_"]
    assert await history.list_sessions(prefix=base + "a*") == [base + "a*"]
    assert await history.list_sessions(prefix=base + "a[") == [base + "a["]
    assert await history.list_sessions(prefix=base) == sorted(ids)


async def test_list_sessions_is_sorted_and_lists_each_once(
    history: ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """`list_sessions` returns each session holding messages once, sorted."""
    base = new_session_id("")
    ids = [base + suffix for suffix in ("b", "a", "\u00e9", "B", "\U0001f600", "a ")]
    for session in ids:
        await history.add_messages(session, make_messages(2))
        await history.add_messages(session, make_messages(1))
    assert await history.list_sessions(prefix=base) == sorted(ids)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    suffixes=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12),
        min_size=2,
        max_size=4,
        unique=True,
    )
)
async def test_sessions_isolated_for_any_ids(
    history: ChatHistoryProvider, session_prefix: str, suffixes: list[str]
) -> None:
    """Whatever characters ids hold, each session reads back exactly its own messages."""
    ids = [session_prefix + "h" + suffix for suffix in suffixes]
    for session in ids:
        await history.add_messages(session, [ChatMessage.user(session)])
    for session in ids:
        assert texts(await history.list_messages(session)) == [session]
        await history.clear(session)
