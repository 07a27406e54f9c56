"""`RedisChatHistoryProvider`: histories in Redis or a Redis Cluster, on `redis.asyncio`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from memweave._codec import OnCorrupt
from memweave._deprecation import renamed_argument, warn_renamed
from memweave.errors import MissingDependency
from memweave.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ChatHistoryProvider,
    DeleteOutcome,
    PageRow,
    ReduceOn,
    SessionInfo,
    StoredRecord,
)
from memweave.reducers.base import ChatReducer

try:
    from redis.asyncio import Redis, RedisCluster
except ImportError as exc:  # pragma: no cover - exercised in a test that hides redis
    raise MissingDependency("redis", "redis") from exc

from memweave.providers import _redis_scripts as scripts
from memweave.providers._limits import redis_limit
from memweave.providers._namespace import redis_names
from memweave.providers._redis_client import DEFAULT_URL as DEFAULT_URL
from memweave.providers._redis_client import (
    client_from_url,
    describe,
    loop_clients,
    map_redis_errors,
    socket_timeout,
)
from memweave.providers._redis_index import SessionIndex, SessionKeys
from memweave.providers._redis_index import text as _text
from memweave.providers._resilience import resolve_options

__all__ = ["RedisChatHistoryProvider", "client_from_url", "loop_clients"]

_KEY_CACHE_SIZE = 4096  # key names of recently used sessions, kept pre-encoded
_CACHE_SIZE = 4096  # entries of the listed-sessions and page-position caches
_SCAN_EVERY = 16  # sessions created between two opportunistic purge steps
_SCAN = 64  # expired index members such a step looks at


@dataclass(slots=True, eq=False)
class _Link:
    """What the provider uses in one event loop."""

    client: Redis | RedisCluster
    index: SessionIndex
    cold: bool
    """A cluster client that has not read the slot map yet (see `_warm`)."""
    warm_lock: asyncio.Lock


def _session_tag(session_id: str) -> str:
    # A digest, not the id: braces in an id can't move the hash tag, glob characters can't
    # reach a key name, and every session's keys land in one cluster slot.
    return hashlib.blake2b(session_id.encode(), digest_size=16).hexdigest()


class RedisChatHistoryProvider(ChatHistoryProvider):
    """Stores histories in Redis (one server or a Cluster); process-safe, each change atomic.

    Each session is up to five keys sharing the hash tag `{blake2b(session id)}`: a list of
    the stored JSON entries, a parallel list of role initials and message ids, a set of stored
    ids, a copy of the system entries (only while there are some) and a hash of its created
    and updated times (see `_redis_scripts`). `add_messages` is one `EVALSHA` that skips known
    ids, appends, trims to `max_messages` (tool results orphaned at the head go too, and
    trimmed ids are forgotten, so re-adding one stores it again), stamps the times and renews
    the `ttl` on every key. `limit=N` is one `LRANGE -N -1`; a page after or before a message
    is one script that finds the cursor (`SISMEMBER`, then the position this provider last saw
    it at, checked with `LINDEX`, else `LPOS` from the nearer end) and reads `limit` entries,
    so paging and streaming cost the page, not the history. A reduced read
    (`reduce_on="read"`) reads the tail a page at a time plus the system copy; the price is
    that system messages are stored twice. Deletes and truncation are one script each; they
    read the role list of the session, so they cost its length.

    Sessions are listed from an index of 16 shards, each a pair of sorted sets under its own
    hash tag `{<namespace>:ix<n>}` (a session's shard follows its digest), read with
    `ZRANGEBYLEX ... LIMIT` (never `SCAN`): a page of `limit` ids costs `limit` per shard. The
    index is written when a session is created or emptied, not on every append. On a single
    server the session's script does it; in a Cluster, where the index lives in other slots,
    the provider runs the index script after the session's one (so appends spread over the
    masters, and only a session's first append here pays a second round trip). A writer that
    fails between the two leaves the session unlisted until its next append through a provider
    that has not listed it yet. Listing filters out ids whose keys are gone, and expired
    members leave the index in bounded batches: `purge_expired()`, one small step per
    `list_sessions` call and one per 16 sessions created. The unsharded index of earlier
    releases (`<namespace>:{<namespace>}:sessions`) is still read, purged and pruned.

    Event loops: built from a URL, the provider works in any event loop (consecutive
    `asyncio.run` calls, a test framework's loop per test, threads each running a loop): each
    loop gets a client and pool of its own, closed on that loop when it shuts down, and
    `aclose()` closes those of loops still running. A `client` you pass in serves the loop
    that first used the provider; a call from another loop raises `EventLoopMismatch`.

    One message's stored JSON may take up to the server's `proto-max-bulk-len` (read with
    `CONFIG GET` on the first `add_messages`; 512 MiB, the default, where `CONFIG` is not
    allowed); a bigger message raises `MessageTooLarge` before anything is sent.

    Timeouts and retries (see `ChatHistoryProvider`): a client built from a URL has socket
    connect and read timeouts of `timeout`, and each round of work is also held to it with
    `asyncio.timeout` (whatever the redis-py version; redis-py drops a connection whose
    command was cancelled). Its single-server client retries nothing by itself, so only the
    idempotent calls are retried, by the provider; a cluster client also follows `MOVED`
    and `ASK` and refreshes its slot map itself. A pooled connection the server closed is
    replaced when it is next taken from the pool. A `client` you pass in keeps its own
    timeouts and retry settings.

    Args:
        url: `redis://`, `rediss://` or `unix://` for one server; `redis+cluster://host:port`
            or `rediss+cluster://...` for a Redis Cluster (any node as the entry point).
            Defaults to `redis://localhost:6379/0` when no `client` is given.
        client: A `redis.asyncio.Redis` or `RedisCluster` to use instead of a URL; the
            caller keeps ownership and `aclose()` leaves it open.
        namespace: The name this provider's data lives under, so several applications
            share one server: every key name starts with `<namespace>:`, and providers in
            different namespaces share nothing (default `memweave`). Must not hold braces,
            spaces or control characters.
        max_messages: Keep at most this many messages per session (newest kept).
        ttl: Forget a session this long after its last `add_messages` (sliding).
        on_corrupt: `"raise"` or `"skip"` a stored entry that cannot be decoded.
        reducer: Optional reducer applied on read or write (see `reduce_on`).
        reduce_on: `"read"` for a reduced view, `"write"` to store the reduced history.
        timeout: Seconds each round of storage work may take, retries included (default 10;
            None: no limit); also `?timeout=` in the URL.
        retries: Retries of a transiently failed idempotent call (default 3; 0: none); also
            `?retries=` in the URL.
        prefix: Deprecated name of `namespace` (the same key names); goes in 0.3.

    Raises:
        ConfigurationError: A bad URL or option, or both `namespace` and `prefix`.

    Example:
        ```python
        history = RedisChatHistoryProvider("redis://localhost:6379/0", ttl=timedelta(days=7))
        async with history:
            await history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        namespace: str | None = None,
        max_messages: int | None = None,
        ttl: timedelta | None = None,
        on_corrupt: OnCorrupt = "raise",
        reducer: ChatReducer | None = None,
        reduce_on: ReduceOn = "read",
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        prefix: str | None = None,
    ) -> None:
        owner = type(self).__name__
        renamed_argument(owner, "prefix", prefix, "namespace", namespace)
        url, timeout, retries = resolve_options(url, timeout, retries)
        super().__init__(
            max_messages=max_messages,
            ttl=ttl,
            on_corrupt=on_corrupt,
            reducer=reducer,
            reduce_on=reduce_on,
            timeout=timeout,
            retries=retries,
        )
        self.namespace = redis_names(namespace, prefix, owner=owner)
        """The name this provider's data lives under: the first part of every key name."""
        self._links, first = loop_clients(
            url,
            client,
            owner=owner,
            link=self._link,
            client_of=_client_of,
            timeout=self.timeout,
        )
        if client is not None:
            self._url = describe(first)
        else:
            self._url = url if url is not None else DEFAULT_URL
        self._socket_timeout = self.timeout if client is None else socket_timeout(first)
        self._cluster = isinstance(first, RedisCluster)
        # The index's key layout (shards, legacy keys), the same on every loop's client.
        self._layout = SessionIndex(
            first, self.namespace, cluster=self._cluster, keys_of=self._session_keys
        )
        self._key_cache: dict[str, SessionKeys] = {}
        # Cluster only: sessions this provider has listed in the index (or saw created).
        self._listed: dict[str, None] = {}
        # (session, message id) -> (position, role initial) where a page last saw the message.
        self._hints: dict[tuple[str, str], tuple[int, str]] = {}
        self._creations = 0

    @property
    def prefix(self) -> str:
        """Deprecated name of `namespace`; goes in 0.3."""
        warn_renamed(f"{type(self).__name__}.prefix", ".namespace", stacklevel=3)
        return self.namespace

    def _session_keys(self, session_id: str) -> SessionKeys:
        """The names of the session's keys, its index shard and what its scripts get."""
        keys = self._key_cache.get(session_id)
        if keys is None:
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            tag = _session_tag(session_id)
            base = f"{self.namespace}:{{{tag}}}:".encode()
            session = (base + b"msgs", base + b"meta", base + b"ids", base + b"sys", base + b"info")
            shard = self._layout.shard_for(tag)
            legacy = self._layout.legacy.keys
            script = session if self._cluster else (*session, *shard.keys, *legacy)
            keys = SessionKeys(session, shard, script)
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
        link = await self._ready()
        keys = self._session_keys(session_id)
        scan = _SCAN if self._creations % _SCAN_EVERY == _SCAN_EVERY - 1 else 0
        args: list[str | bytes | int] = [max_messages or 0, _milliseconds(ttl), session_id, scan]
        for record in records:
            args += (record.role[0] + record.id, record.data)
        length, created, pttl, expired = await scripts.APPEND(link.client, keys.script, args)
        if created:
            self._creations += 1
        if self._cluster and length and (created or session_id not in self._listed):
            expired = await link.index.touch(
                keys.shard, session_id, int(pttl), scan if created else 0
            )
            _remember(self._listed, session_id, None)
        if expired:
            await link.index.settle(keys.shard, expired)

    async def _read(self, session_id: str, limit: int | None) -> list[bytes]:
        link = await self._ready()
        msgs = self._session_keys(session_id).msgs
        rows = await link.client.lrange(msgs, -limit if limit else 0, -1)
        return [_bytes(row) for row in rows]

    async def _read_system(self, session_id: str) -> list[bytes]:
        """One `LRANGE` of the session's copy of its system entries, whatever its length."""
        link = await self._ready()
        rows = await link.client.lrange(self._session_keys(session_id).session[3], 0, -1)
        return [_bytes(row) for row in rows]

    async def _count(self, session_id: str) -> int:
        link = await self._ready()
        return int(await link.client.llen(self._session_keys(session_id).msgs))

    async def _clear(self, session_id: str) -> None:
        link = await self._ready()
        keys = self._session_keys(session_id)
        self._listed.pop(session_id, None)
        if not self._cluster:
            await scripts.CLEAR(link.client, keys.script, [session_id])
            return
        await link.client.delete(*keys.session)
        await link.index.unindex([session_id])

    async def _list_sessions(
        self, prefix: str | None, *, after: str | None, limit: int | None
    ) -> list[str]:
        link = await self._ready()
        return await link.index.page(prefix, after, limit)

    async def _session_info(self, session_id: str) -> SessionInfo | None:
        link = await self._ready()
        keys = self._session_keys(session_id)
        reply = await scripts.SESSION_INFO(link.client, [keys.msgs, keys.info], [])
        count = int(reply[0])
        if not count:
            return None
        created, updated = reply[1], reply[2]
        return SessionInfo(
            id=session_id,
            message_count=count,
            created_at=_when(created),
            updated_at=_when(updated),
        )

    async def _read_page(
        self, session_id: str, *, after: str | None, before: str | None, limit: int
    ) -> list[PageRow] | None:
        link = await self._ready()
        keys = self._session_keys(session_id)
        cursor = after if after is not None else before
        mode = "n" if cursor is None else "a" if after is not None else "b"
        position, initial = self._hints.get((session_id, cursor or ""), (-1, ""))
        reply = await scripts.READ_PAGE(
            link.client, keys.session[:3], [mode, limit, cursor or "", position, initial]
        )
        if reply is None:
            return None
        start, tags, data = int(reply[0]), [_text(t) for t in reply[1]], reply[2]
        rows = [(tag[1:], _bytes(row)) for tag, row in zip(tags, data, strict=True)]
        if rows:
            # The next page's cursor is the first (older pages) or last (newer) row.
            _remember(self._hints, (session_id, rows[0][0]), (start, tags[0][0]))
            _remember(self._hints, (session_id, rows[-1][0]), (start + len(rows) - 1, tags[-1][0]))
        return rows

    async def _delete(self, session_id: str, message_ids: Sequence[str]) -> DeleteOutcome:
        link = await self._ready()
        keys = self._session_keys(session_id)
        reply = await scripts.DELETE(
            link.client, keys.script, [session_id, _tombstone(), *message_ids]
        )
        deleted, orphan, change = int(reply[0]), _text(reply[1]), int(reply[2])
        if orphan:
            return DeleteOutcome(0, orphan=orphan)
        await self._emptied(link, session_id, change)
        return DeleteOutcome(deleted)

    async def _truncate_after(self, session_id: str, message_id: str) -> int | None:
        link = await self._ready()
        keys = self._session_keys(session_id)
        position, initial = self._hints.get((session_id, message_id), (-1, ""))
        deleted = int(
            await scripts.TRUNCATE(link.client, keys.session, [message_id, position, initial])
        )
        return None if deleted < 0 else deleted

    async def _prune(self, older_than: timedelta, *, dry_run: bool) -> int:
        link = await self._ready()
        return await link.index.prune(_milliseconds(older_than), dry_run=dry_run)

    async def _purge_expired(self) -> int:
        link = await self._ready()
        return await link.index.purge_expired()

    async def _remove(self, session_id: str, message_ids: Sequence[str]) -> None:
        link = await self._ready()
        keys = self._session_keys(session_id)
        change = await scripts.REMOVE(
            link.client, keys.script, [session_id, _tombstone(), *message_ids]
        )
        await self._emptied(link, session_id, int(change))

    async def _replace(
        self,
        session_id: str,
        records: Sequence[StoredRecord],
        *,
        expected_last_id: str | None,
    ) -> bool:
        link = await self._ready()
        keys = self._session_keys(session_id)
        args: list[str | bytes | int] = [
            session_id,
            "0" if expected_last_id is None else "1",
            expected_last_id or "",
        ]
        for record in records:
            args += (record.role[0] + record.id, record.data)
        replaced, change, pttl = await scripts.REPLACE(link.client, keys.script, args)
        if self._cluster and int(change) > 0:
            await link.index.touch(keys.shard, session_id, int(pttl), 0)
            _remember(self._listed, session_id, None)
        await self._emptied(link, session_id, int(change))
        return bool(replaced)

    async def _emptied(self, link: _Link, session_id: str, change: int) -> None:
        """Unlist a session a script left empty; on a single server the script did."""
        if change < 0 and self._cluster:
            self._listed.pop(session_id, None)
            await link.index.unindex([session_id])

    async def _aclose(self) -> None:
        await self._links.aclose()

    async def _max_record_bytes(self) -> int:
        link = await self._ready()
        return await redis_limit(link.client)

    @property
    def _client(self) -> Redis | RedisCluster:
        """The running event loop's client."""
        return self._links.get().client

    @property
    def _index(self) -> SessionIndex:
        """The sessions index on the running event loop's client."""
        return self._links.get().index

    def _link(self, client: Redis | RedisCluster) -> _Link:
        index = SessionIndex(
            client, self.namespace, cluster=self._cluster, keys_of=self._session_keys
        )
        return _Link(client, index, self._cluster, asyncio.Lock())

    async def _ready(self) -> _Link:
        link = self._links.get()
        if link.cold:
            await self._warm(link)
        return link

    async def _warm(self, link: _Link) -> None:
        # redis-py's RedisCluster mis-routes commands sent concurrently before it has read the
        # slot map, then tears down connections still in use; so it is initialized once, first.
        async with link.warm_lock:
            if link.cold and isinstance(link.client, RedisCluster):
                await link.client.initialize()
            link.cold = False

    def _map_errors(self) -> contextlib.AbstractContextManager[None]:
        """Translate redis-py errors, marking those a retry may cure."""
        return map_redis_errors(
            self._url,
            timeout=self._socket_timeout,
            prefix=self.namespace,
            owner=type(self).__name__,
            bound_to="the client passed in",
        )


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a bounded cache, forgetting the oldest entry when full."""
    if key not in cache and len(cache) >= _CACHE_SIZE:
        # Threads running loops of their own may evict at the same time.
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):
            del cache[next(iter(cache))]
    cache[key] = value


def _client_of(link: _Link) -> Redis | RedisCluster:
    return link.client


def _tombstone() -> str:
    """A value no stored entry can equal, marking list entries for one `LREM`."""
    return f"\x00memweave-removed-{uuid.uuid4().hex}"


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _when(ms: bytes | str | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _milliseconds(ttl: timedelta | None) -> int:
    if ttl is None:
        return 0
    return max(1, ttl // timedelta(milliseconds=1))
