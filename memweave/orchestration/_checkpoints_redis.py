"""`RedisCheckpointStore`: workflow checkpoints in Redis, on `redis.asyncio`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from memweave._deprecation import renamed_argument, warn_renamed
from memweave.errors import MissingDependency
from memweave.orchestration.checkpoints import Checkpoint, CheckpointStore

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - needs an environment without redis
    raise MissingDependency("redis", "redis") from exc

from memweave.providers._namespace import REDIS, check_namespace
from memweave.providers._redis_client import loop_clients, map_redis_errors, socket_timeout
from memweave.providers._resilience import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    CallPolicy,
    resolve_options,
)

__all__ = ["RedisCheckpointStore"]

DEFAULT_URL = "redis://localhost:6379/0"

_T = TypeVar("_T")

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
    `<namespace>:checkpoints:{<thread_key>}:...`; both share one hash tag, so a thread lives in one
    cluster slot. A save is one script that skips known ids, appends and trims to
    `max_checkpoints`.

    Event loops: as `RedisChatHistoryProvider`. Built from a URL, the store works in any event
    loop, with a client per loop closed when its loop shuts down; a `client` you pass in serves
    the loop that first used the store, and a call from another loop raises
    `EventLoopMismatch`.

    Timeouts and retries: as `RedisChatHistoryProvider`'s. Every call must finish within
    `timeout` (else `BackendTimeout`), and since each is idempotent (a save is by checkpoint
    id), every call that fails transiently is retried up to `retries` times.

    Args:
        url: `redis://`, `rediss://`, `unix://`, or `redis+cluster://` for a Redis Cluster.
            Defaults to `redis://localhost:6379/0` when no `client` is given.
        client: A `redis.asyncio.Redis` or `RedisCluster` to use instead; the caller keeps
            ownership and `aclose()` leaves it open.
        namespace: The name this store's data lives under, so several applications share
            one server: every key name starts with `<namespace>:` (default `memweave`, as
            `RedisChatHistoryProvider`'s). Must not hold braces, spaces or control characters.
        max_checkpoints: Keep at most this many checkpoints per thread (newest kept).
        timeout: Seconds each call may take, retries included (default 10; None: no limit);
            also `?timeout=` in the URL.
        retries: Retries of a transiently failed call (default 3; 0: none); also
            `?retries=` in the URL.
        prefix: Deprecated name of `namespace` (the same key names); goes in 0.3.

    Raises:
        ConfigurationError: A bad URL or option, or both `namespace` and `prefix`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        namespace: str | None = None,
        max_checkpoints: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        prefix: str | None = None,
    ) -> None:
        owner = type(self).__name__
        renamed_argument(owner, "prefix", prefix, "namespace", namespace)
        super().__init__(max_checkpoints=max_checkpoints)
        url, self.timeout, self.retries = resolve_options(url, timeout, retries)
        self._policy = CallPolicy(self.timeout, self.retries)
        self.namespace = check_namespace(
            prefix if prefix is not None else namespace,
            REDIS,
            owner=owner,
            option="prefix" if prefix is not None else "namespace",
        )
        """The name this store's data lives under: the first part of every key name."""
        self._links, first = loop_clients(
            url,
            client,
            owner=owner,
            link=_link,
            client_of=_client_of,
            timeout=self.timeout,
        )
        self._socket_timeout = self.timeout if client is None else socket_timeout(first)
        if client is None:
            self._url = url if url is not None else DEFAULT_URL
        else:
            self._url = "redis://(client)"

    @property
    def prefix(self) -> str:
        """Deprecated name of `namespace`; goes in 0.3."""
        warn_renamed(f"{type(self).__name__}.prefix", ".namespace", stacklevel=3)
        return self.namespace

    def keys(self, thread: str) -> tuple[str, str]:
        """The keys of a thread (from `thread_key`): its id list and its data hash.

        Raises:
            ProviderClosed: The store was closed.
        """
        self._check_open("keys")
        return self._keys(thread)

    def _keys(self, thread: str) -> tuple[str, str]:
        base = f"{self.namespace}:checkpoints:{{{thread}}}:"
        return base + "order", base + "data"

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one call under `timeout`, retrying transient failures (all calls are
        idempotent)."""
        return await self._policy.run(operation, self._map_errors, call, retry=True, url=self._url)

    async def _put(
        self, thread: str, checkpoint: Checkpoint, data: bytes, max_checkpoints: int | None
    ) -> None:
        keys = list(self._keys(thread))
        args: list[str | bytes | int] = [checkpoint.id, data, max_checkpoints or 0]
        await self._call("save_checkpoint", lambda: self._links.get().save(keys=keys, args=args))

    async def _get(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        return await self._call(
            "get_checkpoint", functools.partial(self._read_one, thread, checkpoint_id)
        )

    async def _read_one(self, thread: str, checkpoint_id: str | None) -> bytes | None:
        link = self._links.get()
        order, data = self._keys(thread)
        if checkpoint_id is None:
            rows = await link.read(keys=[order, data], args=[1])
            return bytes(rows[0]) if rows else None
        value: Any = await link.client.hget(data, checkpoint_id)
        return bytes(value) if value is not None else None

    async def _list(self, thread: str, limit: int | None) -> list[bytes]:
        keys = list(self._keys(thread))
        rows = await self._call(
            "list_checkpoints", lambda: self._links.get().read(keys=keys, args=[limit or 0])
        )
        return [bytes(row) for row in rows]

    async def _delete(self, thread: str) -> None:
        keys = self._keys(thread)
        await self._call("delete_checkpoints", lambda: self._links.get().client.delete(*keys))

    async def _aclose(self) -> None:
        await self._links.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        with map_redis_errors(
            self._url,
            timeout=self._socket_timeout,
            prefix=self.namespace,
            owner=type(self).__name__,
            bound_to="the client passed in",
        ):
            yield
