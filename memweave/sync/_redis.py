"""Blocking faces of the Redis backends: `RedisChatHistoryProvider` and `RedisCheckpointStore`."""

from __future__ import annotations

from typing import Any

from memweave.orchestration import _checkpoints_redis
from memweave.providers import redis as _redis
from memweave.sync._checkpoints import CheckpointStore
from memweave.sync._history import ChatHistoryProvider
from memweave.sync._wrap import mirrors

__all__ = ["RedisChatHistoryProvider", "RedisCheckpointStore"]


class RedisChatHistoryProvider(ChatHistoryProvider):
    """Blocking face of `memweave.providers.RedisChatHistoryProvider` (one server or a
    cluster). Takes the same arguments; the client and its pool live on memweave's portal
    loop, so pass a URL rather than a `client` you use elsewhere."""

    _wraps = _redis.RedisChatHistoryProvider
    _async: _redis.RedisChatHistoryProvider

    @mirrors(_redis.RedisChatHistoryProvider)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_redis.RedisChatHistoryProvider, args, kwargs)

    @property
    def namespace(self) -> str:
        """The name this provider's data lives under."""
        return self._async.namespace


class RedisCheckpointStore(CheckpointStore):
    """Blocking face of `memweave.orchestration.RedisCheckpointStore`. Takes the same
    arguments."""

    _wraps = _checkpoints_redis.RedisCheckpointStore
    _async: _checkpoints_redis.RedisCheckpointStore

    @mirrors(_checkpoints_redis.RedisCheckpointStore)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_checkpoints_redis.RedisCheckpointStore, args, kwargs)

    @property
    def namespace(self) -> str:
        """The name this store's data lives under."""
        return self._async.namespace
