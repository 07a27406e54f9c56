"""The public windowed read: `list_messages(session_id, reducer=r)` equals `r` on the whole
history, read from the end."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memweave import ChatMessage
from memweave.providers import ChatHistoryProvider
from memweave.reducers import ChatReducer, MessageCountReducer, TokenBudgetReducer
from tests.conformance._builders import make_messages, tool_pair


class WholeHistoryReducer(ChatReducer):
    """Keeps every other message; has no `reduce_tail`, so it needs the whole history."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        self.seen.append(len(messages))
        return list(messages)[::2]


def long_history() -> list[ChatMessage]:
    """Two system messages far apart, tool pairs, and enough turns to need several pages."""
    out: list[ChatMessage] = [ChatMessage.system("you are terse")]
    for n in range(60):
        out.extend(make_messages(4, text=f"turn {n}"))
        if n % 7 == 0:
            out.extend(tool_pair(2))
        if n == 30:
            out.append(ChatMessage.system("mid-conversation rule"))
    return out


@pytest.mark.parametrize(
    "reducer",
    [MessageCountReducer(10), MessageCountReducer(100), TokenBudgetReducer(300)],
    ids=["count-10", "count-100", "tokens-300"],
)
async def test_list_messages_reducer_equals_reducing_the_whole_history(
    history: ChatHistoryProvider, session_id: str, reducer: ChatReducer
) -> None:
    """`reducer=r` returns exactly what `r.reduce` gives on the whole stored history."""
    messages = long_history()
    await history.add_messages(session_id, messages)
    expected = await reducer.reduce(await history.list_messages(session_id))
    got = await history.list_messages(session_id, reducer=reducer)
    assert [m.id for m in got] == [m.id for m in expected]


async def test_list_messages_reducer_without_tail_support_gets_the_whole_history(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A reducer that needs the whole history (no `reduce_tail`) is given all of it."""
    messages = make_messages(300)
    await history.add_messages(session_id, messages)
    reducer = WholeHistoryReducer()
    got = await history.list_messages(session_id, reducer=reducer)
    assert [m.id for m in got] == [m.id for m in messages[::2]]
    assert reducer.seen[-1] == 300


async def test_list_messages_reducer_overrides_the_providers_read_reducer(
    make_history: Callable[..., ChatHistoryProvider], session_id: str
) -> None:
    """`reducer=` replaces the provider's own read reducer for that call; `limit` applies to
    the window."""
    history = make_history(reducer=MessageCountReducer(4), reduce_on="read")
    messages = make_messages(20)
    await history.add_messages(session_id, messages)
    assert len(await history.list_messages(session_id)) == 4
    got = await history.list_messages(session_id, reducer=MessageCountReducer(8), limit=5)
    assert [m.id for m in got] == [m.id for m in messages[-5:]]


async def test_list_messages_reducer_of_unknown_session_is_empty(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """An unknown session gives an empty window."""
    assert await history.list_messages(session_id, reducer=MessageCountReducer(5)) == []


async def test_list_messages_reducer_must_be_a_reducer(
    history: ChatHistoryProvider, session_id: str
) -> None:
    """A `reducer` that is not a `ChatReducer` is an `InvalidArgument`."""
    from memweave.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        await history.list_messages(session_id, reducer="last-10")  # type: ignore[arg-type]


@settings(
    max_examples=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(
    turns=st.integers(min_value=0, max_value=120),
    keep=st.integers(min_value=1, max_value=90),
    system_at=st.sets(st.integers(min_value=0, max_value=119), max_size=3),
)
async def test_windowed_read_matches_reduce_for_any_history(
    history: ChatHistoryProvider,
    new_session_id: Callable[[str], str],
    turns: int,
    keep: int,
    system_at: set[int],
) -> None:
    """For any history length, window size and system-message placement, the windowed read
    equals reducing the whole history."""
    session_id = new_session_id("")
    messages: list[ChatMessage] = []
    for n in range(turns):
        if n in system_at:
            messages.append(ChatMessage.system(f"rule {n}"))
        messages.extend(make_messages(2, text=f"t{n}"))
    if messages:
        await history.add_messages(session_id, messages)
    reducer = MessageCountReducer(keep)
    expected = await reducer.reduce(messages)
    got = await history.list_messages(session_id, reducer=reducer)
    assert [m.id for m in got] == [m.id for m in expected]
