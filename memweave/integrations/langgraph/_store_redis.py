"""`RedisStoreBackend`: the items of a `MemweaveStore` in Redis or a Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from memweave._urls import mask_url
from memweave.errors import (
    ConfigurationError,
    MissingDependency,
)
from memweave.integrations.langgraph._store_backend import ItemWrite, StoreBackend, StoredRow

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - needs an environment without redis
    raise MissingDependency("redis", "redis") from exc

from memweave.providers._redis_client import map_redis_errors, socket_timeout
from memweave.providers.redis import DEFAULT_URL, loop_clients

__all__ = ["RedisStoreBackend"]

_BAD_PREFIX = re.compile(r"[{}\x00-\x20\x7f]")
_PAGE = 500
_SEP = "|"
"""Between a namespace path and an item id in index members; above every hex digit."""

# KEYS: the index, then one item key per write. ARGV: per write, its kind (p/d), index
# member, body and TTL in ms (0: none). The server's clock stamps the times; a put keeps
# the created time of the document it replaces. One script: the batch is atomic.
_WRITE = """
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
for i = 2, #KEYS do
  local base = (i - 2) * 4
  local kind, member, body, ttl = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  if kind == 'd' then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], member)
  else
    local created = now
    local old = redis.call('GET', KEYS[i])
    if old then
      created = string.match(old, '^{"c":(%d+),') or now
    end
    local doc = '{"c":' .. created .. ',"u":' .. now .. ',"t":' .. ttl .. ',"d":' .. body .. '}'
    if tonumber(ttl) > 0 then
      redis.call('SET', KEYS[i], doc, 'PX', ttl)
    else
      redis.call('SET', KEYS[i], doc)
    end
    redis.call('ZADD', KEYS[1], 0, member)
  end
end
return #KEYS - 1
"""

# KEYS: item keys. ARGV[1]: '1' to restart the TTL of the items read. Returns the documents
# (false for a missing or expired item).
_READ = """
local out = {}
for i = 1, #KEYS do
  local doc = redis.call('GET', KEYS[i])
  out[i] = doc
  if doc and ARGV[1] == '1' then
    local ttl = tonumber(string.match(doc, ',"t":(%d+),') or '0')
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return out
"""

# KEYS: the index, then the item key of each member in ARGV. Returns the documents; the
# member of an item whose key is gone (expired) leaves the index in the same step, so a
# member is never dropped while its item exists.
_COLLECT = """
local out = {}
for i = 2, #KEYS do
  local doc = redis.call('GET', KEYS[i])
  if doc then
    out[i - 1] = doc
  else
    redis.call('ZREM', KEYS[1], ARGV[i - 1])
    out[i - 1] = false
  end
end
return out
"""


@dataclass(slots=True, eq=False)
class _Link:
    """What the backend uses in one event loop: a client and its scripts."""

    client: Redis | RedisCluster
    write: AsyncScript
    read: AsyncScript
    collect: AsyncScript
    cold: bool
    warm_lock: asyncio.Lock


def _link(client: Redis | RedisCluster) -> _Link:
    return _Link(
        client,
        client.register_script(_WRITE),
        client.register_script(_READ),
        client.register_script(_COLLECT),
        isinstance(client, RedisCluster),
        asyncio.Lock(),
    )


def _client_of(link: _Link) -> Redis | RedisCluster:
    return link.client


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStoreBackend(StoreBackend):
    """Items in Redis, one string key each, with a lexicographic index of namespace paths.

    Keys share the hash tag `{<prefix>:store}` (one cluster slot, so every batch is one
    atomic script): `{<prefix>:store}:item:<id>` holds `{"c": created µs, "u": updated µs,
    "t": TTL ms, "d": <item body>}` (times from the server's clock), and the sorted set
    `{<prefix>:store}:paths` holds one member `<namespace path>|<id>` per item, all with
    score 0, so a namespace prefix is one
    `ZRANGEBYLEX` range. A TTL is the key's own expiry (`PX`), restarted by refreshing reads
    (`PEXPIRE`); index members of expired items are removed when a scan meets them, in the
    same script that finds their key gone, and by `sweep`, which walks the whole index.
    A namespace prefix costs its item count (there is no per-namespace ordering).

    Args:
        url: `redis://`, `rediss://`, `unix://` or `redis+cluster://`; the default server when
            None and no `client` is given.
        client: A `redis.asyncio.Redis` or `RedisCluster` to use instead; the caller keeps
            ownership and `aclose()` leaves it open.
        prefix: First part of every key name; no braces, spaces or control characters.
        owner: The class name shown in errors.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        prefix: str = "memweave",
        owner: str = "MemweaveStore",
    ) -> None:
        if not isinstance(prefix, str) or not prefix or _BAD_PREFIX.search(prefix):
            raise ConfigurationError(
                "prefix must be a non-empty str without braces, spaces or control characters "
                f"(braces would change the cluster hash tag), got {prefix!r}"
            )
        self._owner = owner
        self._links, first = loop_clients(
            url, client, owner=owner, link=_link, client_of=_client_of
        )
        self._prefix = prefix
        self._socket_timeout = socket_timeout(first)
        source = url if url is not None else DEFAULT_URL
        self.url = mask_url(source) if client is None else "redis://(client)"
        tag = f"{{{prefix}:store}}"
        self._index = f"{tag}:paths"
        self._item = f"{tag}:item:"

    async def _ready(self) -> _Link:
        link = self._links.get()
        if link.cold:
            # redis-py's RedisCluster mis-routes commands sent before it has read the slot map.
            async with link.warm_lock:
                if link.cold and isinstance(link.client, RedisCluster):
                    await link.client.initialize()
                link.cold = False
        return link

    def _row(self, item: str, doc: bytes | str) -> StoredRow:
        text = _text(doc)
        # The wrapper is ours (see _WRITE); the body after "d": is the item's own JSON.
        head, _, _ = text.partition(',"d":')
        try:
            meta = json.loads(head + "}")
            body = text[len(head) + len(',"d":') : -1]
            ttl = int(meta["t"])
            return StoredRow(
                id=item,
                body=body,
                created_at=int(meta["c"]) / 1_000_000,
                updated_at=int(meta["u"]) / 1_000_000,
                ttl=ttl / 1000 if ttl > 0 else None,
            )
        except (ValueError, KeyError, TypeError):
            # Left to the decoder, which names the item.
            return StoredRow(id=item, body=text, created_at=0.0, updated_at=0.0, ttl=None)

    async def write(self, writes: Sequence[ItemWrite]) -> None:
        """One script for the whole batch."""
        if not writes:
            return
        keys = [self._index]
        args: list[str] = []
        for write in writes:
            keys.append(self._item + write.id)
            ttl = 0 if write.ttl is None else max(1, round(write.ttl * 1000))
            kind = "d" if write.body is None else "p"
            args += [kind, write.path + _SEP + write.id, write.body or "", str(ttl)]
        with self._map_errors():
            link = await self._ready()
            await link.write(keys=keys, args=args)

    async def read(self, ids: Sequence[str], *, refresh: bool) -> list[StoredRow]:
        """One script: `GET` each key (and `PEXPIRE` it, refreshing)."""
        if not ids:
            return []
        with self._map_errors():
            link = await self._ready()
            docs = await link.read(
                keys=[self._item + item for item in ids], args=["1" if refresh else "0"]
            )
        return [self._row(item, doc) for item, doc in zip(ids, docs, strict=True) if doc]

    async def _walk(self, bounds: tuple[str, str] | None) -> list[StoredRow]:
        """Every live item in `bounds`, a page of 500 index members per round trip pair."""
        low = "[" + bounds[0] if bounds is not None else "-"
        high = "(" + bounds[1] if bounds is not None else "+"
        out: list[StoredRow] = []
        with self._map_errors():
            link = await self._ready()
            while True:
                page = [
                    _text(member)
                    for member in await link.client.zrangebylex(
                        self._index, low, high, start=0, num=_PAGE
                    )
                ]
                if not page:
                    return out
                ids = [member.rpartition(_SEP)[2] for member in page]
                docs = await link.collect(
                    keys=[self._index, *(self._item + item for item in ids)], args=page
                )
                out.extend(self._row(item, doc) for item, doc in zip(ids, docs, strict=True) if doc)
                if len(page) < _PAGE:
                    return out
                low = "(" + page[-1]

    async def scan(
        self, bounds: tuple[str, str] | None, window: tuple[int, int] | None
    ) -> list[StoredRow]:
        """Reads every item in the range; a window is then cut from them in memory."""
        rows = await self._walk(bounds)
        if window is None:
            return rows
        offset, limit = window
        rows.sort(key=lambda row: (-row.updated_at, row.id))
        return rows[offset : offset + limit]

    async def namespaces(self, bounds: tuple[str, str] | None) -> list[tuple[str, ...]]:
        """Reads every item in the range (the index holds paths, not labels)."""
        found: dict[str, tuple[str, ...]] = {}
        for row in await self._walk(bounds):
            body = _text(row.body) if isinstance(row.body, bytes) else row.body
            try:
                labels = json.loads(body).get("ns")
            except (ValueError, AttributeError):
                continue
            if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
                found.setdefault(json.dumps(labels), tuple(labels))
        return list(found.values())

    async def touch(self, rows: Sequence[StoredRow]) -> None:
        """One pipelined `PEXPIRE` per item with a TTL."""
        timed = [row for row in rows if row.ttl is not None]
        if not timed:
            return
        with self._map_errors():
            link = await self._ready()
            pipe = link.client.pipeline(transaction=False)
            for row in timed:
                assert row.ttl is not None
                pipe.pexpire(self._item + row.id, max(1, round(row.ttl * 1000)))
            await pipe.execute()

    async def sweep(self) -> list[str]:
        """Walks the whole index; members of expired items leave it on the way."""
        removed: list[str] = []
        low = "-"
        with self._map_errors():
            link = await self._ready()
            while True:
                page = [
                    _text(member)
                    for member in await link.client.zrangebylex(
                        self._index, low, "+", start=0, num=_PAGE
                    )
                ]
                if not page:
                    return removed
                ids = [member.rpartition(_SEP)[2] for member in page]
                docs = await link.collect(
                    keys=[self._index, *(self._item + item for item in ids)], args=page
                )
                removed.extend(item for item, doc in zip(ids, docs, strict=True) if not doc)
                if len(page) < _PAGE:
                    return removed
                low = "(" + page[-1]

    async def setup(self) -> None:
        """Nothing to create: keys appear with the first put."""

    async def aclose(self) -> None:
        """Close the clients built here."""
        with self._map_errors():
            await self._links.aclose()

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        with map_redis_errors(
            self.url,
            timeout=self._socket_timeout,
            prefix=self._prefix,
            owner=self._owner,
            bound_to="the client passed in",
        ):
            yield
