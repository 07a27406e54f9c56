"""History backends: the `ChatHistoryProvider` contract, its implementations, and `from_url`.

Backends with optional drivers are imported lazily, so `from memweave.providers import
RedisChatHistoryProvider` only needs `redis` when it is actually used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memweave.providers._diagnose import Diagnosis, Finding, diagnose
from memweave.providers._home import data_dir
from memweave.providers.base import ChatHistoryProvider, ReduceOn, SessionInfo, StoredRecord
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.providers.url import SUPPORTED_SCHEMES, from_url

if TYPE_CHECKING:
    from memweave.providers.chroma import ChromaChatHistoryProvider
    from memweave.providers.redis import RedisChatHistoryProvider
    from memweave.providers.sql import SQLChatHistoryProvider

__all__ = [
    "SUPPORTED_SCHEMES",
    "ChatHistoryProvider",
    "ChromaChatHistoryProvider",
    "Diagnosis",
    "Finding",
    "InMemoryChatHistoryProvider",
    "RedisChatHistoryProvider",
    "ReduceOn",
    "SQLChatHistoryProvider",
    "SessionInfo",
    "StoredRecord",
    "data_dir",
    "diagnose",
    "from_url",
]

_LAZY = {
    "SQLChatHistoryProvider": "memweave.providers.sql",
    "RedisChatHistoryProvider": "memweave.providers.redis",
    "ChromaChatHistoryProvider": "memweave.providers.chroma",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
