"""Reducers keep a history inside a message or token budget.

Every reducer is pure (it never mutates its input) and deterministic, keeps system messages
unless asked otherwise, and keeps an assistant tool call and its tool results together.
"""

from memweave.reducers.base import ChatReducer
from memweave.reducers.count import MessageCountReducer
from memweave.reducers.summary import SummarizingReducer
from memweave.reducers.tokens import TokenBudgetReducer, TokenCounter, TokenCounterProtocol

__all__ = [
    "ChatReducer",
    "MessageCountReducer",
    "SummarizingReducer",
    "TokenBudgetReducer",
    "TokenCounter",
    "TokenCounterProtocol",
]
