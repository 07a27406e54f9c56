"""`RedisCheckpointStore`: workflow checkpoints in Redis, on `redis.asyncio`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from memweave._loops import is_loop_error
from memweave.errors import (
    BackendUnavailable,
    ConfigurationError,
    EventLoopMismatch,
    MissingDependency,
)
from memweave.orchestration.checkpoints import Checkpoint, CheckpointStore

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript
    from redis.exceptions import RedisClusterException, RedisError
except ImportError as exc:  # pragma: no cover - needs an environment without redis
    raise MissingDependency("redis", "redis") from exc

from memweave.providers.redis import loop_clients

__all__ = ["RedisCheckpointStore"]

DEFAULT_URL = "redis://localhost:6379/0"

_BAD_PREFIX = re.compile(r"[{}\x00-\x20\x7f]")

# KEYS: order list, data hash. ARGV: checkpoint id, JSON, max checkpoints (0: no limit).
# One script, so the id check, the append and the trim are one atomic step.
_SAVE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
local keep = tonumber(ARGV[3])
if keep > 0 then
  local extra = redis.call('LLEN', KEYS[1]) - keep
  for _ = 1, extra do
    redis.call('HDEL', KEYS[2], redis.call('LPOP', KEYS[1]))
  end
end
return 1
"""

# KEYS: order list, data hash. ARGV: how many of the newest (0: all). Newest first.
_LIST = """
local count = tonumber(ARGV[1])
local ids = redis.call('LRANGE', KEYS[1], count > 0 and -count or 0, -1)
local out = {}
for i = #ids, 1, -1 do
  local data = redis.call('HGET', KEYS[2], ids[i])
  if data then out[#out + 1] = data end
end
return out
"""


@dataclass(frozen=True, slots=True, eq=False)
class _Link:
    """What the store uses in one event loop: a client and its scripts."""

    client: Redis | RedisCluster
    save: AsyncScript
    read: AsyncScript


def _link(client: Redis | RedisCluster) -> _Link:
    return _Link(client, client.register_script(_SAVE), client.register_script(_LIST))


def _client_of(link: _Link) -> Redis | RedisCluster:
    return link.client


class RedisCheckpointStore(CheckpointStore):
    """Redis based, process-safe checkpoint store: one atomic Lua script per save.

    A thread's checkpoints are a hash (id to JSON) and a list of ids in save order, under
    `<prefix>:checkpoints:{<thread_key>}:...`; both share one hash tag, so a thread lives in one
    cluster slot. A save is one script that skips known ids, appends and trims to
    `max_checkpoints`.

    Event loops: as `RedisChatHistoryProvider`. Built from a URL, the store works in any event
    loop, with a client per loop closed when its loop shuts down; a `client` you pass in serves
    the loop that first used the store, and a call from another loop raises
    `EventLoopMismatch`.

    Args:
        url: `redis://`, `rediss://`, `unix://`, or `redis+cluster://` for a Redis Cluster.
            Defaults to `redis://localhost:6379/0` when no `client` is given.
        client: A `redis.asyncio.Redis` or `RedisCluster` to use instead; the caller keeps
            ownership and `aclose()` leaves it open.
        prefix: First part of every key name. Must not hold braces, spaces or control
            characters.
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        prefix: str = "memweave",
        max_checkpoints: int | None = None,
    ) -> None:
        super().__init__(max_checkpoints=max_checkpoints)
        if not isinstance(prefix, str) or not prefix or _BAD_PREFIX.search(prefix):
            raise ConfigurationError(
                "prefix must be a non-empty str without braces, spaces or control characters "
                f"(braces would change the cluster hash tag), got {prefix!r}"
            )
        self._links, _ = loop_clients(
            url, client, owner=type(self).__name__, link=_link, client_of=_client_of
        )
        if client is None:
            self._url = url if url is not None else DEFAULT_URL
        else:
            self._url = "redis://(client)"
        self.prefix = prefix

    def keys(self, thread: str) -> tuple[str, str]:
        """The keys of a thread (from `thread_key`): its id list and its data hash.

        Raises:
            ProviderClosed: The store was closed.
        """
        self._check_open("keys")
        return self._keys(thread)

    def _keys(self, thread: str) -> tuple[str, str]:
        base = f"{self.prefix}:checkpoints:{{{thread}}}:"
        return base + "order", base + "data"

    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        await self._links.get().save(
            keys=list(self._keys(thread)), args=[checkpoint.id, data, max_checkpoints or 0]
        )

    async def _get(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        link = self._links.get()
        order, data = self._keys(thread)
        if checkpoint_id is None:
            rows = await link.read(keys=[order, data], args=[1])
            return bytes(rows[0]) if rows else None
        value: Any = await link.client.hget(data, checkpoint_id)
        return bytes(value) if value is not None else None

    async def _list(self, thread: str, limit: int | None) -> list[bytes]:
        rows = await self._links.get().read(keys=list(self._keys(thread)), args=[limit or 0])
        return [bytes(row) for row in rows]

    async def _delete(self, thread: str) -> None:
        await self._links.get().client.delete(*self._keys(thread))

    async def _aclose(self) -> None:
        await self._links.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, RedisClusterException) as error:
            raise BackendUnavailable(f"{type(error).__name__}: {error}", url=self._url) from error
        except RuntimeError as error:
            if is_loop_error(error):
                # A client passed in after the caller used it in another loop.
                raise EventLoopMismatch(type(self).__name__, "the client passed in") from error
            raise
