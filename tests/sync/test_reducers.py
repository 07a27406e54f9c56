"""Blocking reducers: `reduce` as a plain call, equal to the async result."""

from __future__ import annotations

import asyncio

import pytest

from memweave import ChatMessage, sync
from memweave.errors import ConfigurationError, InvalidArgument
from memweave.reducers import MessageCountReducer, SummarizingReducer, TokenBudgetReducer
from memweave.testing import ScriptedChatClient
from tests.conformance._builders import make_messages, tool_pair

HISTORY = [
    ChatMessage.system("Be brief."),
    *make_messages(6),
    *tool_pair(2),
    *make_messages(5, text="later"),
]


@pytest.mark.parametrize(
    ("blocking", "reference"),
    [
        (lambda: sync.MessageCountReducer(5), lambda: MessageCountReducer(5)),
        (lambda: sync.TokenBudgetReducer(60), lambda: TokenBudgetReducer(60)),
        (
            lambda: sync.SummarizingReducer(
                ScriptedChatClient(["the summary"]), keep_last=3, trigger_at=6
            ),
            lambda: SummarizingReducer(
                ScriptedChatClient(["the summary"]), keep_last=3, trigger_at=6
            ),
        ),
    ],
    ids=["count", "tokens", "summary"],
)
def test_reduce_equals_the_async_reduce(blocking: object, reference: object) -> None:
    """A blocking reducer returns what its async reducer returns, input untouched."""
    given = list(HISTORY)
    reduced = blocking().reduce(given)  # type: ignore[operator]
    expected = asyncio.run(reference().reduce(given))  # type: ignore[operator]
    assert [m.text for m in reduced] == [m.text for m in expected]
    assert given == HISTORY


def test_reduce_tail_is_available() -> None:
    """`reduce_tail` answers from the system messages and the tail, as the async one does."""
    reducer = sync.MessageCountReducer(3)
    window = reducer.reduce_tail([HISTORY[0]], HISTORY[-4:])
    assert window is not None
    assert [m.text for m in window] == [m.text for m in reducer.reduce(HISTORY)]


def test_blocking_reducer_is_accepted_where_a_reducer_goes(
    sync_history: sync.ChatHistoryProvider, session_id: str
) -> None:
    """A blocking reducer works in `list_messages(reducer=...)`."""
    sync_history.add_messages(session_id, HISTORY)
    window = sync_history.list_messages(session_id, reducer=sync.MessageCountReducer(4))
    assert len(window) == 4
    assert window[0].role == "system"


def test_reducers_raise_the_async_errors() -> None:
    """Bad options and bad input raise the async reducers' typed errors."""
    with pytest.raises(ConfigurationError):
        sync.MessageCountReducer(0)
    with pytest.raises(InvalidArgument):
        sync.ChatReducer("not a reducer")  # type: ignore[arg-type]
