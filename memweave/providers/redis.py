"""`RedisChatHistoryProvider`: histories in Redis or a Redis Cluster, on `redis.asyncio`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from memweave._codec import OnCorrupt
from memweave._urls import mask_url
from memweave.errors import BackendUnavailable, ConfigurationError, MissingDependency
from memweave.providers import _redis_scripts as scripts
from memweave.providers.base import ChatHistoryProvider, ReduceOn, StoredRecord
from memweave.reducers.base import ChatReducer

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised in a test that hides redis
    raise MissingDependency("redis", "redis") from exc

__all__ = ["RedisChatHistoryProvider"]

DEFAULT_URL = "redis://localhost:6379/0"

_KEY_CACHE_SIZE = 4096  # key names of recently used sessions, kept pre-encoded

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_BAD_PREFIX = re.compile(r"[{}\x00-\x20\x7f]")


def _session_tag(session_id: str) -> str:
    # A digest, not the id: braces in an id can't move the hash tag, glob characters can't
    # reach a key name, and every session's keys land in one cluster slot.
    return hashlib.blake2b(session_id.encode(), digest_size=16).hexdigest()


def _lex_bounds(prefix: str | None) -> tuple[bytes, bytes]:
    if prefix is None:
        return b"-", b"+"
    raw = prefix.encode()
    # UTF-8 never holds 0xff, so every id starting with `raw` sorts below `raw + 0xff`.
    return b"[" + raw, b"(" + raw + b"\xff"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisChatHistoryProvider(ChatHistoryProvider):
    """Stores histories in Redis (one server or a Cluster); process-safe, each append atomic.

    Each session is up to four keys sharing the hash tag `{blake2b(session id)}`: a list of
    the stored JSON entries, a parallel list of roles and message ids, a set of stored ids,
    and a copy of the system entries (only while there are some). `add_messages` is one
    `EVALSHA` that skips known ids, appends, trims to `max_messages` (tool results orphaned at
    the head go too, and trimmed ids are forgotten, so re-adding one stores it again) and
    renews the `ttl` on every key. `limit=N` is one `LRANGE -N -1`, so appends and recent
    reads cost the same at any history length. A reduced read (`reduce_on="read"`) reads the
    tail a page at a time plus the system copy, so its cost follows the window, not the
    history length; the price is that system messages are stored twice.

    Sessions are listed from an index under `<prefix>:{<prefix>}:...`: a sorted set of ids
    read with `ZRANGEBYLEX` (never `SCAN`) and a sorted set of expiry times. On a single
    server the index is updated inside the same script. In a Redis Cluster it lives in
    another slot, so its update is a second script sent concurrently with the first (still
    one network round trip in time); a writer that fails between the two, or an `add_messages`
    racing a `clear` of the same session, can leave the index stale until the next add.
    Listing filters out ids whose keys no longer exist, so it never returns a cleared or
    expired session.

    Args:
        url: `redis://`, `rediss://` or `unix://` for one server; `redis+cluster://host:port`
            or `rediss+cluster://...` for a Redis Cluster (any node as the entry point).
            Defaults to `redis://localhost:6379/0` when no `client` is given.
        client: A `redis.asyncio.Redis` or `RedisCluster` to use instead of a URL; the
            caller keeps ownership and `aclose()` leaves it open.
        prefix: First part of every key name; providers with different prefixes share
            nothing. Must not hold braces, spaces or control characters.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.

    Example:
        ```python
        history = RedisChatHistoryProvider("redis://localhost:6379/0", ttl=timedelta(days=7))
        async with history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"durable", "multi_process"})

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        prefix: str = "memweave",
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
        )
        if not isinstance(prefix, str) or not prefix or _BAD_PREFIX.search(prefix):
            raise ConfigurationError(
                f"prefix must be a non-empty str without braces, spaces or control characters "
                f"(braces would change the cluster hash tag), got {prefix!r}"
            )
        if client is not None and url is not None:
            raise ConfigurationError("pass either url or client, not both")
        if client is None:
            self._url = url if url is not None else DEFAULT_URL
            self._client: Redis | RedisCluster = client_from_url(self._url)
            self._owns_client = True
        elif isinstance(client, Redis | RedisCluster):
            self._url = _describe(client)
            self._client = client
            self._owns_client = False
        else:
            raise ConfigurationError(
                f"client must be a redis.asyncio Redis or RedisCluster, got {client!r}"
            )
        self.prefix = prefix
        self._cluster = isinstance(self._client, RedisCluster)
        self._cold = self._cluster
        self._warm_lock = asyncio.Lock()
        index = f"{prefix}:{{{prefix}}}:".encode()
        self._index = (index + b"sessions", index + b"expiry")
        self._key_cache: dict[str, tuple[bytes, bytes, bytes, bytes]] = {}
        self._append_script = _Script(scripts.APPEND if self._cluster else scripts.APPEND_INDEXED)

    def _keys(self, session_id: str) -> tuple[bytes, bytes, bytes]:
        """The session's keys: stored entries, roles and ids, and the set of stored ids."""
        msgs, meta, ids, _ = self._session_keys(session_id)
        return msgs, meta, ids

    def _session_keys(self, session_id: str) -> tuple[bytes, bytes, bytes, bytes]:
        """`_keys` plus the copy of the system entries: every key the session scripts name."""
        keys = self._key_cache.get(session_id)
        if keys is None:
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            base = f"{self.prefix}:{{{_session_tag(session_id)}}}:".encode()
            keys = (base + b"msgs", base + b"meta", base + b"ids", base + b"sys")
            self._key_cache[session_id] = keys
        return keys

    async def _append(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        max_messages: int | None,
        ttl: timedelta | None,
    ) -> None:
        if not records and ttl is None:
            return
        if self._cold:
            await self._warm()
        ttl_ms = _milliseconds(ttl)
        args: list[str | bytes | int] = [max_messages or 0, ttl_ms]
        if not self._cluster:
            args.append(session_id)
        for record in records:
            args += (record.role[0] + record.id, record.data)
        keys = self._session_keys(session_id)
        if not self._cluster:
            await self._run(self._append_script, [*keys, *self._index], args)
        elif records:
            await _gather(
                self._run(self._append_script, keys, args),
                self._run(_INDEX_TOUCH, self._index, [session_id, ttl_ms]),
            )
        elif await self._run(self._append_script, keys, args):
            await self._run(_INDEX_TOUCH, self._index, [session_id, ttl_ms])

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        if self._cold:
            await self._warm()
        msgs = self._session_keys(session_id)[0]
        rows = await self._client.lrange(msgs, -limit if limit else 0, -1)
        return [row.encode() if isinstance(row, str) else row for row in rows]

    async def _read_system(self, session_id: str) -> list[bytes]:
        """One `LRANGE` of the session's copy of its system entries, whatever its length."""
        if self._cold:
            await self._warm()
        rows = await self._client.lrange(self._session_keys(session_id)[3], 0, -1)
        return [row.encode() if isinstance(row, str) else row for row in rows]

    async def _count(self, session_id: str) -> int:
        if self._cold:
            await self._warm()
        return int(await self._client.llen(self._session_keys(session_id)[0]))

    async def _clear(self, session_id: str) -> None:
        if self._cold:
            await self._warm()
        keys = self._session_keys(session_id)
        if not self._cluster:
            await self._run(_CLEAR_INDEXED, [*keys, *self._index], [session_id])
            return
        await _gather(
            self._client.delete(*keys),
            self._run(_UNINDEX, self._index, [session_id]),
        )

    async def _list_sessions(self, prefix: str | None) -> list[str]:
        if self._cold:
            await self._warm()
        found = await self._run(_LIST_SESSIONS, self._index, list(_lex_bounds(prefix)))
        candidates = [_text(member) for member in found]
        if not candidates:
            return []
        # The index is a listing aid that can trail the data (see the class docstring), so
        # only ids whose keys exist are reported.
        pipe = self._client.pipeline(transaction=False)
        for session_id in candidates:
            pipe.exists(self._session_keys(session_id)[0])
        exists = await pipe.execute()
        return [session_id for session_id, n in zip(candidates, exists, strict=True) if n]

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        if self._cold:
            await self._warm()
        tombstone = f"\x00memweave-removed-{uuid.uuid4().hex}"
        await self._run(_REMOVE, self._session_keys(session_id), [tombstone, *message_ids])

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        if self._cold:
            await self._warm()
        args: list[str | bytes | int] = [
            "0" if expected_last_id is None else "1",
            expected_last_id or "",
        ]
        for record in records:
            args += (record.role[0] + record.id, record.data)
        replaced, pttl = await self._run(_REPLACE, self._session_keys(session_id), args)
        if replaced and records:
            await self._run(_INDEX_TOUCH, self._index, [session_id, max(0, int(pttl))])
        return bool(replaced)

    async def _aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _warm(self) -> None:
        # redis-py's RedisCluster mis-routes commands sent concurrently before it has read the
        # slot map, then tears down connections still in use; so it is initialized once, first.
        async with self._warm_lock:
            if self._cold and isinstance(self._client, RedisCluster):
                await self._client.initialize()
            self._cold = False

    async def _run(self, script: _Script, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # The server lost its script cache (restart, failover, SCRIPT FLUSH): load, retry.
            await self._client.script_load(script.source)
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        try:
            yield
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                raise ConfigurationError(
                    f"a key under prefix {self.prefix!r} at {mask_url(self._url)} holds data "
                    f"memweave did not write ({exc}); use another prefix"
                ) from exc
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}", url=self._url) from exc
        except (RedisError, RedisClusterException) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}", url=self._url) from exc


class _Script:
    """A Lua script and its SHA1, the name `EVALSHA` runs it by once the server has it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_INDEX_TOUCH = _Script(scripts.INDEX_TOUCH)
_UNINDEX = _Script(scripts.UNINDEX)
_CLEAR_INDEXED = _Script(scripts.CLEAR_INDEXED)
_LIST_SESSIONS = _Script(scripts.LIST_SESSIONS)
_REMOVE = _Script(scripts.REMOVE)
_REPLACE = _Script(scripts.REPLACE)


def _milliseconds(ttl: timedelta | None) -> int:
    if ttl is None:
        return 0
    return max(1, ttl // timedelta(milliseconds=1))


async def _gather(*calls: Awaitable[Any]) -> None:
    # Both calls always finish, so no task is left with an unretrieved error.
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def client_from_url(url: str) -> Redis | RedisCluster:
    """A redis-py async client for `url`: `redis://`, `rediss://`, `unix://`, or a cluster
    through any node with `redis+cluster://` / `rediss+cluster://`.

    Raises:
        ConfigurationError: `url` is not a Redis URL redis-py accepts (password masked).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str, got {url!r}")
    scheme, _, rest = url.partition("://")
    try:
        if scheme.lower() in _CLUSTER_SCHEMES:
            return RedisCluster.from_url(f"{_CLUSTER_SCHEMES[scheme.lower()]}://{rest}")
        client: Redis = Redis.from_url(url)
    except (ValueError, TypeError, RedisError, RedisClusterException) as exc:
        raise ConfigurationError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from exc
    return client


def _describe(client: Redis | RedisCluster) -> str:
    """A password-free URL naming where `client` connects, for error messages."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or client.nodes_manager.startup_nodes.values()
        node = next(iter(nodes), None)
        return f"redis+cluster://{node.host}:{node.port}" if node else "redis+cluster://"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"
