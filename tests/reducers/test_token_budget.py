"""TokenBudgetReducer: the newest whole groups within a token budget, found from the tail."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest

from memweave.errors import ConfigurationError, InvalidMessage
from memweave.messages import ChatMessage
from memweave.reducers import ChatReducer, TokenBudgetReducer, TokenCounter

from ._histories import assistant, system, tool_group, user


class CharCounter:
    """A TokenCounterProtocol that charges one token per character and records its calls."""

    def __init__(self) -> None:
        self.counted: list[str] = []

    def count_message(self, message: ChatMessage) -> int:
        self.counted.append(message.id)
        return len(message.text) + 1

    def count(self, messages: Iterable[ChatMessage]) -> int:
        return sum(self.count_message(m) for m in messages)


def conversation(turns: int) -> list[ChatMessage]:
    out: list[ChatMessage] = [system("rules")]
    for turn in range(turns):
        out += [user(f"question {turn:04d}"), assistant(f"answer {turn:04d}")]
    return out


def test_reducer_is_a_chat_reducer() -> None:
    """TokenBudgetReducer implements ChatReducer."""
    assert isinstance(TokenBudgetReducer(100), ChatReducer)


async def test_reduce_keeps_system_and_newest_within_budget(counter: TokenCounter) -> None:
    """The result is the system message and the newest messages that fit, costing <= budget."""
    history = conversation(50)
    reducer = TokenBudgetReducer(200, counter=counter)
    result = await reducer.reduce(history)
    assert result[0] is history[0]
    assert result[1:] == history[len(history) - len(result) + 1 :]
    assert counter.count(result) <= 200
    one_more = [history[0], history[-len(result)], *result[1:]]
    assert counter.count(one_more) > 200


async def test_reduce_under_budget_returns_everything(counter: TokenCounter) -> None:
    """A history inside the budget comes back whole, as the same objects."""
    history = conversation(3)
    result = await TokenBudgetReducer(10_000, counter=counter).reduce(history)
    assert result == history
    assert all(a is b for a, b in zip(result, history, strict=True))


async def test_reduce_empty_history_is_empty() -> None:
    """An empty history reduces to an empty list."""
    assert await TokenBudgetReducer(100).reduce([]) == []


async def test_reduce_never_splits_a_tool_group() -> None:
    """A budget ending inside a tool group drops the whole group."""
    group = tool_group(3, text="x" * 20)
    history = [user("q"), *group, assistant("done")]
    tail_cost = sum(len(m.text) + 1 for m in [*group[2:], history[-1]])
    result = await TokenBudgetReducer(tail_cost + 1, counter=CharCounter()).reduce(history)
    assert result == [history[-1]]


async def test_reduce_keeps_newest_group_over_budget_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The newest group is kept whole even when it alone exceeds the budget, with a warning."""
    group = tool_group(2, text="y" * 50)
    history = [user("q"), *group]
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.tokens"):
        result = await TokenBudgetReducer(10, counter=CharCounter()).reduce(history)
    assert result == group
    assert "newest message group" in caplog.text


async def test_reduce_starts_on_user_message() -> None:
    """With start_on_user the kept part starts on its oldest user message."""
    history = [user("q1"), assistant("a1"), user("q2"), assistant("a-long-answer")]
    budget = sum(len(m.text) + 1 for m in history[1:])
    reducer = TokenBudgetReducer(budget, counter=CharCounter())
    assert await reducer.reduce(history) == history[2:]
    loose = TokenBudgetReducer(budget, counter=CharCounter(), start_on_user=False)
    assert await loose.reduce(history) == history[1:]


async def test_reduce_without_user_in_window_keeps_the_window() -> None:
    """When the kept part holds no user message it is kept as is, never emptied."""
    first, second = tool_group(1), tool_group(1)
    history = [user("go"), *first, *second, assistant("done")]
    budget = sum(len(m.text) + 1 for m in [*second, history[-1]])
    result = await TokenBudgetReducer(budget, counter=CharCounter()).reduce(history)
    assert result == [*second, history[-1]]


async def test_reduce_moves_system_messages_first() -> None:
    """System messages anywhere are kept, placed first, in their order."""
    late = system("late rule")
    history = [system("first rule"), user("q"), assistant("a"), late, user("q2")]
    result = await TokenBudgetReducer(10_000).reduce(history)
    assert result == [history[0], late, history[1], history[2], history[4]]


async def test_reduce_without_keep_system_may_drop_system() -> None:
    """With keep_system=False system messages are windowed like the others."""
    history = [system("s" * 50), user("q"), assistant("a")]
    reducer = TokenBudgetReducer(10, counter=CharCounter(), keep_system=False)
    assert await reducer.reduce(history) == history[1:]


async def test_reserve_tokens_shrink_the_budget(counter: TokenCounter) -> None:
    """reserve_tokens are kept free of the budget."""
    history = conversation(40)
    full = await TokenBudgetReducer(300, counter=counter).reduce(history)
    reserved = await TokenBudgetReducer(300, counter=counter, reserve_tokens=150).reduce(history)
    assert len(reserved) < len(full)
    assert counter.count(reserved) <= 150


async def test_reduce_never_starts_on_orphan_tool_result() -> None:
    """A tool result whose call is not in the history never opens the kept part."""
    orphan = ChatMessage.tool("call_gone", "stale result")
    history = [orphan, assistant("a")]
    budget = sum(len(m.text) + 1 for m in history)
    result = await TokenBudgetReducer(budget, counter=CharCounter()).reduce(history)
    assert result == [history[-1]]


async def test_reduce_does_not_mutate_input() -> None:
    """reduce leaves its input list as it was."""
    history = conversation(30)
    before = list(history)
    await TokenBudgetReducer(50).reduce(history)
    assert history == before


async def test_reduce_accepts_a_tuple(counter: TokenCounter) -> None:
    """Any sequence of messages is accepted."""
    history = conversation(10)
    reducer = TokenBudgetReducer(100, counter=counter)
    assert await reducer.reduce(tuple(history)) == await reducer.reduce(history)


async def test_reduce_rejects_non_messages() -> None:
    """A non-message item raises InvalidMessage with its position."""
    with pytest.raises(InvalidMessage) as caught:
        await TokenBudgetReducer(100).reduce([user("hi"), "oops"])  # type: ignore[list-item]
    assert caught.value.position == 1


async def test_reduce_rejects_a_lone_message() -> None:
    """A single ChatMessage instead of a list raises InvalidMessage."""
    with pytest.raises(InvalidMessage, match="single ChatMessage"):
        await TokenBudgetReducer(100).reduce(user("hi"))  # type: ignore[arg-type]


async def test_reduce_counts_only_the_tail() -> None:
    """A turn counts the window, not the whole history."""
    history = conversation(2_000)
    spy = CharCounter()
    reducer = TokenBudgetReducer(200, counter=spy)
    await reducer.reduce(history)
    assert len(spy.counted) < 30


async def test_reduce_sees_a_system_message_inserted_mid_history(counter: TokenCounter) -> None:
    """Editing the middle of a history between turns is noticed (no stale system cache)."""
    history = conversation(100)
    reducer = TokenBudgetReducer(200, counter=counter)
    await reducer.reduce(history)
    rule = system("a rule added later")
    edited = [*history[:50], rule, *history[50:], user("next")]
    result = await reducer.reduce(edited)
    assert result[:2] == [history[0], rule]
    assert result == await TokenBudgetReducer(200, counter=counter).reduce(edited)


@pytest.mark.parametrize(
    "options",
    [
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": 100, "reserve_tokens": 100},
        {"max_tokens": 100, "reserve_tokens": -1},
        {"max_tokens": 100, "counter": CharCounter(), "model": "gpt-4o"},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object]) -> None:
    """Bad constructor options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        TokenBudgetReducer(**options)  # type: ignore[arg-type]


async def test_reduce_tail_answers_from_a_long_enough_tail(counter: TokenCounter) -> None:
    """Given the older system messages and a tail that fills the budget, reduce_tail answers
    as reduce does; given too short a tail, it asks for more with None."""
    history = conversation(500)
    history.insert(300, system("a later rule"))
    reducer = TokenBudgetReducer(200, counter=counter)
    expected = await reducer.reduce(history)
    older = [m for m in history[:-100] if m.role == "system"]
    assert await reducer.reduce_tail(older, history[-100:]) == expected
    assert await reducer.reduce_tail(older, history[-2:]) is None


async def test_reduce_tail_counts_only_the_tail() -> None:
    """reduce_tail looks at the newest messages only, as reduce does."""
    history = conversation(2_000)
    spy = CharCounter()
    result = await TokenBudgetReducer(200, counter=spy).reduce_tail(history[:1], history[1:])
    assert result is not None
    assert len(spy.counted) < 30
