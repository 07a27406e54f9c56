"""MessageCountReducer: at most max_messages messages, system messages and whole groups kept."""

from __future__ import annotations

import logging

import pytest

from memweave.errors import ConfigurationError, InvalidMessage
from memweave.reducers import ChatReducer, MessageCountReducer

from ._histories import assistant, system, tool_group, user


def test_reducer_is_a_chat_reducer() -> None:
    """MessageCountReducer implements ChatReducer."""
    assert isinstance(MessageCountReducer(5), ChatReducer)


async def test_reduce_keeps_system_and_newest_messages() -> None:
    """The system message counts towards max_messages and the newest others fill the rest."""
    history = [system("rules")]
    for turn in range(10):
        history += [user(f"q{turn}"), assistant(f"a{turn}")]
    result = await MessageCountReducer(5).reduce(history)
    assert result == [history[0], *history[-4:]]


async def test_reduce_under_limit_returns_everything() -> None:
    """A history inside the limit comes back whole."""
    history = [user("q"), assistant("a")]
    assert await MessageCountReducer(5).reduce(history) == history


async def test_reduce_empty_history_is_empty() -> None:
    """An empty history reduces to an empty list."""
    assert await MessageCountReducer(3).reduce([]) == []


async def test_reduce_drops_tool_group_whole() -> None:
    """A limit falling inside a tool group drops the group and its results together."""
    group = tool_group(3)
    history = [user("q"), *group, user("thanks"), assistant("welcome")]
    result = await MessageCountReducer(4).reduce(history)
    assert result == history[-2:]


async def test_reduce_keeps_tool_group_whole() -> None:
    """A tool group that fits is kept with all its results."""
    group = tool_group(2)
    history = [user("old"), assistant("x"), user("q"), *group]
    assert await MessageCountReducer(4).reduce(history) == [history[2], *group]


async def test_reduce_keeps_newest_group_over_limit_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The newest group is kept even when it alone holds more than max_messages."""
    group = tool_group(3)
    history = [user("q"), *group]
    with caplog.at_level(logging.WARNING, logger="memweave.reducers.count"):
        result = await MessageCountReducer(2).reduce(history)
    assert result == group
    assert "max_messages=2" in caplog.text


async def test_reduce_starts_on_user_message() -> None:
    """With start_on_user the kept part starts on a user message when it holds one."""
    history = [user("q1"), assistant("a1"), assistant("a1b"), user("q2"), assistant("a2")]
    assert await MessageCountReducer(3).reduce(history) == history[3:]
    loose = MessageCountReducer(3, start_on_user=False)
    assert await loose.reduce(history) == history[2:]


async def test_reduce_without_keep_system_counts_system_like_others() -> None:
    """With keep_system=False a system message can fall out of the window."""
    history = [system("rules"), user("q"), assistant("a")]
    assert await MessageCountReducer(2, keep_system=False).reduce(history) == history[1:]


async def test_reduce_system_messages_over_limit_keep_newest_group() -> None:
    """System messages beyond the limit are all kept, with the newest group."""
    history = [system("a"), system("b"), system("c"), user("q"), assistant("a")]
    assert await MessageCountReducer(2).reduce(history) == [*history[:3], history[-1]]


async def test_reduce_rejects_non_messages() -> None:
    """A non-message item raises InvalidMessage with its position."""
    with pytest.raises(InvalidMessage) as caught:
        await MessageCountReducer(2).reduce([user("q"), 3])  # type: ignore[list-item]
    assert caught.value.position == 1


@pytest.mark.parametrize("max_messages", [0, -1, True, 2.5, "3"])
def test_bad_max_messages_is_configuration_error(max_messages: object) -> None:
    """max_messages must be a positive int."""
    with pytest.raises(ConfigurationError, match="max_messages"):
        MessageCountReducer(max_messages)  # type: ignore[arg-type]


async def test_reduce_keeps_system_between_tool_results_inside_group() -> None:
    """A system message between two results of one call stays inside that group."""
    group = tool_group(2)
    history = [user("q"), group[0], group[1], system("note"), group[2], user("next")]
    result = await MessageCountReducer(3, keep_system=False, start_on_user=False).reduce(history)
    assert result == history[-1:]
    kept = await MessageCountReducer(5, keep_system=False, start_on_user=False).reduce(history)
    assert kept == history[1:]


async def test_reduce_tail_answers_from_a_long_enough_tail() -> None:
    """reduce_tail answers as reduce does from a tail holding the window, else None."""
    history = [system("rules")]
    for turn in range(100):
        history += [user(f"q{turn}"), assistant(f"a{turn}")]
    reducer = MessageCountReducer(5)
    expected = await reducer.reduce(history)
    assert await reducer.reduce_tail(history[:1], history[-20:]) == expected
    assert await reducer.reduce_tail(history[:1], history[-3:]) is None


async def test_reduce_tail_asks_for_more_when_a_call_may_be_older() -> None:
    """A tail opening on tool results whose call may be older is not enough to answer."""
    group = tool_group(1)
    history = [assistant("ok"), group[0], system("note"), group[1]]
    reducer = MessageCountReducer(1, keep_system=False)
    assert await reducer.reduce_tail([], history[2:]) is None
    assert await reducer.reduce(history) == history[1:]
