"""Reducer invariants, checked with hypothesis over random histories with parallel tool calls."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memweave.messages import ChatMessage
from memweave.reducers import MessageCountReducer, TokenBudgetReducer, TokenCounter

from ._histories import check_window, histories

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def reduce(
    reducer: TokenBudgetReducer | MessageCountReducer, history: list[ChatMessage]
) -> list[ChatMessage]:
    return asyncio.run(reducer.reduce(history))


@SETTINGS
@given(
    history=histories(),
    budget=st.integers(20, 400),
    keep_system=st.booleans(),
    start_on_user=st.booleans(),
)
def test_token_budget_reducer_keeps_every_invariant(
    counter: TokenCounter,
    history: list[ChatMessage],
    budget: int,
    keep_system: bool,
    start_on_user: bool,
) -> None:
    """Systems first, a contiguous newest part, whole groups, start on user, budget held."""
    snapshot = copy.deepcopy(history)
    reducer = TokenBudgetReducer(
        budget, counter=counter, keep_system=keep_system, start_on_user=start_on_user
    )
    result = reduce(reducer, history)
    assert history == snapshot
    check_window(
        history,
        result,
        keep_system=keep_system,
        start_on_user=start_on_user,
        cost=counter.count,
        budget=budget,
    )


@SETTINGS
@given(
    history=histories(),
    max_messages=st.integers(1, 12),
    keep_system=st.booleans(),
    start_on_user=st.booleans(),
)
def test_message_count_reducer_keeps_every_invariant(
    history: list[ChatMessage], max_messages: int, keep_system: bool, start_on_user: bool
) -> None:
    """Systems first, a contiguous newest part, whole groups, start on user, count held."""
    snapshot = copy.deepcopy(history)
    reducer = MessageCountReducer(
        max_messages, keep_system=keep_system, start_on_user=start_on_user
    )
    result = reduce(reducer, history)
    assert history == snapshot

    def size(messages: Sequence[ChatMessage]) -> int:
        return len(messages)

    check_window(
        history,
        result,
        keep_system=keep_system,
        start_on_user=start_on_user,
        cost=size,
        budget=max_messages,
    )


@SETTINGS
@given(history=histories(), budget=st.integers(20, 400), extra=histories(max_groups=5))
def test_token_budget_reduce_is_deterministic_across_turns(
    counter: TokenCounter, history: list[ChatMessage], budget: int, extra: list[ChatMessage]
) -> None:
    """A reducer reused turn after turn answers as a fresh one does (caches never leak)."""
    reused = TokenBudgetReducer(budget, counter=counter)
    reduce(reused, history)
    grown = [*history, *extra]
    fresh = TokenBudgetReducer(budget, encoding="o200k_base")
    assert [m.id for m in reduce(reused, grown)] == [m.id for m in reduce(fresh, grown)]
    assert [m.id for m in reduce(reused, grown)] == [m.id for m in reduce(fresh, list(grown))]


@SETTINGS
@given(history=histories(), max_messages=st.integers(1, 12), data=st.data())
def test_message_count_reduce_is_deterministic_when_history_is_edited(
    history: list[ChatMessage], max_messages: int, data: st.DataObject
) -> None:
    """Replacing or inserting a message anywhere gives the answer a fresh reducer gives."""
    reused = MessageCountReducer(max_messages)
    reduce(reused, history)
    edited = list(history)
    position = data.draw(st.integers(0, len(edited)))
    replace = data.draw(st.booleans()) and position < len(edited)
    edited[position : position + int(replace)] = [ChatMessage.system("inserted rule")]
    fresh = MessageCountReducer(max_messages)
    assert [m.id for m in reduce(reused, edited)] == [m.id for m in reduce(fresh, edited)]


@SETTINGS
@given(history=histories(), budget=st.integers(20, 400), data=st.data())
def test_token_budget_reduce_tail_matches_reduce(
    counter: TokenCounter, history: list[ChatMessage], budget: int, data: st.DataObject
) -> None:
    """reduce_tail on older system messages plus a tail gives reduce's answer, or None."""
    keep_system = data.draw(st.booleans())
    start_on_user = data.draw(st.booleans())
    reducer = TokenBudgetReducer(
        budget, counter=counter, keep_system=keep_system, start_on_user=start_on_user
    )
    split = data.draw(st.integers(0, len(history)))
    older = [m for m in history[:split] if m.role == "system"]
    tailed = asyncio.run(reducer.reduce_tail(older, history[split:]))
    if tailed is not None:
        assert tailed == reduce(reducer, history)


@SETTINGS
@given(history=histories(), max_messages=st.integers(1, 12), data=st.data())
def test_message_count_reduce_tail_matches_reduce(
    history: list[ChatMessage], max_messages: int, data: st.DataObject
) -> None:
    """reduce_tail on older system messages plus a tail gives reduce's answer, or None."""
    keep_system = data.draw(st.booleans())
    start_on_user = data.draw(st.booleans())
    reducer = MessageCountReducer(
        max_messages, keep_system=keep_system, start_on_user=start_on_user
    )
    split = data.draw(st.integers(0, len(history)))
    older = [m for m in history[:split] if m.role == "system"]
    tailed = asyncio.run(reducer.reduce_tail(older, history[split:]))
    if tailed is not None:
        assert tailed == reduce(reducer, history)
