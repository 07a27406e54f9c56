"""Blocking reducers: `ChatReducer` and the built-in policies, with a blocking `reduce`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage
from memweave.reducers import base as _base
from memweave.reducers import count as _count
from memweave.reducers import summary as _summary
from memweave.reducers import tokens as _tokens
from memweave.sync._wrap import Blocking, mirrors

__all__ = ["ChatReducer", "MessageCountReducer", "SummarizingReducer", "TokenBudgetReducer"]


class ChatReducer(Blocking[_base.ChatReducer]):
    """Blocking face of a `memweave.reducers.ChatReducer`: `reduce` as a plain call.

    A blocking reducer can be passed wherever the blocking face takes a reducer (a provider's
    `reducer=`, `list_messages(reducer=...)`, an `Agent`'s `reducer=`).

    Args:
        reducer: The async reducer to drive (e.g. your own policy).

    Raises:
        InvalidArgument: `reducer` is not a `memweave.reducers.ChatReducer`.
    """

    def __init__(self, reducer: _base.ChatReducer) -> None:
        if not isinstance(reducer, _base.ChatReducer):
            raise InvalidArgument("reducer", reducer, "expected a memweave.reducers.ChatReducer")
        super().__init__(reducer)

    def reduce(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Return the reduced history, oldest first; `messages` is not modified."""
        return self._call(self._async.reduce, messages)

    def reduce_tail(
        self, system: Sequence[ChatMessage], tail: Sequence[ChatMessage]
    ) -> list[ChatMessage] | None:
        """Reduce from the system messages plus the newest ones, or None when older messages
        could change the result (see `ChatReducer.reduce_tail`)."""
        return self._call(self._async.reduce_tail, system, tail)


class MessageCountReducer(ChatReducer):
    """Blocking face of `memweave.reducers.MessageCountReducer`: keeps at most `max_messages`
    messages. Takes the same arguments.

    Example:
        ```python
        from memweave import ChatMessage, sync

        reducer = sync.MessageCountReducer(2)
        window = reducer.reduce([ChatMessage.user(f"m{i}") for i in range(5)])
        assert [m.text for m in window] == ["m3", "m4"]
        ```
    """

    @mirrors(_count.MessageCountReducer)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_count.MessageCountReducer, args, kwargs)


class TokenBudgetReducer(ChatReducer):
    """Blocking face of `memweave.reducers.TokenBudgetReducer`: keeps the newest messages that
    fit a token budget. Takes the same arguments."""

    @mirrors(_tokens.TokenBudgetReducer)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_tokens.TokenBudgetReducer, args, kwargs)


class SummarizingReducer(ChatReducer):
    """Blocking face of `memweave.reducers.SummarizingReducer`: replaces older messages with a
    running summary written by a chat model. Takes the same arguments; the model client is
    used on memweave's portal loop from then on."""

    @mirrors(_summary.SummarizingReducer)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_summary.SummarizingReducer, args, kwargs)
