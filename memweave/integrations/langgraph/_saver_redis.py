"""The Redis storage of `MemweaveCheckpointSaver`: one server or a Redis Cluster.

A thread's data is nine keys `<prefix>:lg:{<thread key>}:<name>` sharing one hash tag (the
digest of the thread id), so the thread lives in one cluster slot and every call on it is one
atomic Lua script (`_saver_lua` lists the keys and what they hold). Blobs carry a reference
count, so deleting a checkpoint deletes the channel values no other checkpoint uses, without
reading the rest of the thread.

Two small indexes outside the threads serve the calls that span threads: the hash
`<prefix>:lg:threads` (thread key -> thread id) for `list(None)`, and one set per run,
`<prefix>:lg:run:{<run key>}`, of the threads holding its checkpoints, for `delete_for_runs`.
On one server the put script updates them too; in a Cluster, where they live in other slots,
the saver updates them after the script, only when the thread or run is new to the thread.
Nothing ever scans the keyspace.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from memweave.errors import (
    ConfigurationError,
    InvalidArgument,
    MissingDependency,
)
from memweave.integrations.langgraph import _saver_lua as lua
from memweave.integrations.langgraph._records import (
    Blob,
    CheckpointStorage,
    CorruptCheckpoint,
    Cursor,
    Head,
    NewCheckpoint,
    Write,
    key_of,
)

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - needs an environment without redis
    raise MissingDependency("redis", "redis") from exc

from memweave.providers._redis_client import map_redis_errors, socket_timeout
from memweave.providers.redis import DEFAULT_URL, loop_clients

__all__ = ["RedisCheckpointStorage"]

_BAD_PREFIX = re.compile(r"[{}\x00-\x20\x7f]")
_NAMES = ("ns", "cp", "ix", "rf", "bl", "rc", "wx", "wr", "rx")
_PRUNE_BATCH = 500
_COPY_BATCH = 200
_OWNER = "MemweaveCheckpointSaver"


@dataclass(frozen=True, slots=True, eq=False)
class _Link:
    """What the storage uses in one event loop: a client and its scripts."""

    client: Redis | RedisCluster
    put: AsyncScript
    put_writes: AsyncScript
    read: AsyncScript
    drop_run: AsyncScript
    prune: AsyncScript
    replace: AsyncScript
    snapshot: AsyncScript
    copy_in: AsyncScript


def _link(client: Redis | RedisCluster) -> _Link:
    scripts = (lua.PUT, lua.PUT_WRITES, lua.READ, lua.DROP_RUN, lua.PRUNE, lua.REPLACE)
    more = (lua.SNAPSHOT, lua.COPY_IN)
    return _Link(client, *(client.register_script(s) for s in (*scripts, *more)))


def _client_of(link: _Link) -> Redis | RedisCluster:
    return link.client


class RedisCheckpointStorage(CheckpointStorage):
    """Checkpoints in Redis: `put`, `put_writes`, a read of one thread, a run's deletion in
    one thread and a prune step are one script each; `delete_thread` is one `DEL`.

    Args:
        url: A Redis URL (`redis+cluster://` for a Cluster), or None with `client`.
        client: The caller's `Redis` or `RedisCluster` (with `decode_responses=False`), left
            open by `aclose()`.
        prefix: First part of every key name; no braces, spaces or control characters.
    """

    def __init__(
        self, url: str | None, *, client: Redis | RedisCluster | None = None, prefix: str
    ) -> None:
        if not isinstance(prefix, str) or not prefix or _BAD_PREFIX.search(prefix):
            raise ConfigurationError(
                "prefix must be a non-empty str without braces, spaces or control characters "
                f"(braces would change the cluster hash tag), got {prefix!r}"
            )
        encoder = getattr(client, "get_encoder", None)
        if encoder is not None and encoder().decode_responses:
            raise ConfigurationError(
                "the Redis client must return bytes (decode_responses=False): channel "
                "values are binary"
            )
        self._links, first = loop_clients(
            url, client, owner=_OWNER, link=_link, client_of=_client_of
        )
        self._cluster = isinstance(first, RedisCluster)
        self._url = "redis://(client)" if client is not None else (url or DEFAULT_URL)
        self.prefix = prefix
        self._socket_timeout = socket_timeout(first)
        self._registry = f"{prefix}:lg:threads"

    def keys(self, thread_id: str) -> list[str]:
        """The nine keys of a thread (see `_saver_lua`)."""
        base = f"{self.prefix}:lg:{{{key_of(thread_id)}}}:"
        return [base + name for name in _NAMES]

    def _run_set(self, run_key: str) -> str:
        return f"{self.prefix}:lg:run:{{{run_key}}}"

    # -- writes -------------------------------------------------------------------------------

    async def put(self, new: NewCheckpoint) -> None:
        head = new.head
        link = self._links.get()
        nsk = key_of(head.checkpoint_ns)
        member = f"{nsk}:{head.checkpoint_id}"
        run = key_of(new.run_id) if new.run_id is not None else ""
        record = _record(head)
        fields = " ".join(f"{nsk}:{key}" for key in head.refs)
        args: list[Any] = [
            nsk,
            head.checkpoint_ns,
            member,
            record,
            f"{run}\n{fields}",
            "1" if new.delta else "0",
            key_of(head.thread_id),
            head.thread_id,
        ]
        for blob in new.blobs:
            args += [f"{nsk}:{blob.key}", blob.type.encode() + b"\n" + (blob.data or b"")]
        keys = self.keys(head.thread_id)
        if not self._cluster:
            keys += [self._registry, self._run_set(run or "none")]
        fresh, new_run = await link.put(keys=keys, args=args)
        if self._cluster and (fresh or new_run):
            if fresh:
                await link.client.hset(self._registry, key_of(head.thread_id), head.thread_id)
            if new_run:
                await link.client.sadd(self._run_set(run), head.thread_id)

    async def put_writes(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, writes: Sequence[Write]
    ) -> None:
        member = f"{key_of(checkpoint_ns)}:{checkpoint_id}"
        args: list[Any] = []
        for w in writes:
            header = json.dumps([w.channel, w.type, w.task_path], ensure_ascii=False)
            args += [
                f"{member}\x00{w.task_id}\x00{w.idx}",
                header.encode() + b"\n" + w.data,
                "1" if w.idx < 0 else "0",
            ]
        keys = self.keys(thread_id)
        await self._links.get().put_writes(keys=[keys[6], keys[7]], args=args)

    async def delete_thread(self, thread_id: str) -> None:
        client = self._links.get().client
        keys = self.keys(thread_id)
        # The indexes first: a put racing this one then finds its thread new and lists it
        # again, rather than staying unlisted.
        rows: list[bytes] = await client.zrange(keys[8], 0, -1)  # type: ignore[assignment]
        runs = {row.split(b":", 1)[0].decode() for row in rows}
        await client.hdel(self._registry, key_of(thread_id))
        for run in runs:
            await client.srem(self._run_set(run), thread_id)
        await client.delete(*keys)

    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        link = self._links.get()
        for run_id in run_ids:
            run = key_of(run_id)
            members: list[bytes] = list(await link.client.smembers(self._run_set(run)))  # type: ignore[arg-type]
            for raw in members:
                thread_id = raw.decode()
                await link.drop_run(keys=self.keys(thread_id), args=[run])
            if members:
                await link.client.srem(self._run_set(run), *members)

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        if not keep_latest:
            for thread_id in thread_ids:
                await self.delete_thread(thread_id)
            return
        link = self._links.get()
        delta = []
        for thread_id in thread_ids:
            if await link.client.hexists(self.keys(thread_id)[0], "delta"):
                delta.append(thread_id)
        if delta:
            raise InvalidArgument(
                "thread_ids",
                delta,
                "these threads use a DeltaChannel, whose values need the checkpoints "
                "keep_latest would delete",
            )
        for thread_id in thread_ids:
            keys = self.keys(thread_id)
            while True:
                dropped = await link.prune(keys=keys, args=[_PRUNE_BATCH])
                if dropped == -1:
                    raise InvalidArgument(
                        "thread_ids", [thread_id], "this thread uses a DeltaChannel"
                    )
                if dropped < _PRUNE_BATCH:
                    break
            await self._orphan_heads(link, thread_id, keys)

    async def _orphan_heads(self, link: _Link, thread_id: str, keys: list[str]) -> None:
        """Clear the parent of each namespace's newest checkpoint when prune deleted it."""
        reply = await link.read(keys=keys, args=["scan", "0", 1, "", ""])
        for head in _heads(thread_id, reply):
            if head.parent_id is None or head.parent_id >= head.checkpoint_id:
                continue
            record = _record(head)
            head.parent_id = None
            member = f"{head.ns_key}:{head.checkpoint_id}"
            await link.replace(keys=[keys[1]], args=[member, record, _record(head)])

    async def copy_thread(self, source: str, target: str) -> None:
        link = self._links.get()
        ns, cps, rfs, blobs, writes = await link.snapshot(keys=self.keys(source))
        if not cps:
            return
        keys = self.keys(target)
        values = dict(zip(rfs[::2], rfs[1::2], strict=True))
        steps: list[tuple[int, int, int, int, list[Any]]] = [(len(ns) // 2, 0, 0, 0, ns)]
        for start in range(0, len(blobs), 2 * _COPY_BATCH):
            chunk = blobs[start : start + 2 * _COPY_BATCH]
            steps.append((0, 0, len(chunk) // 2, 0, chunk))
        members = cps[::2]
        for start in range(0, len(members), _COPY_BATCH):
            chunk = []
            for i in range(start, min(start + _COPY_BATCH, len(members))):
                chunk += [members[i], cps[2 * i + 1], values.get(members[i], b"\n")]
            steps.append((0, len(chunk) // 3, 0, 0, chunk))
        for start in range(0, len(writes), 2 * _COPY_BATCH):
            chunk = writes[start : start + 2 * _COPY_BATCH]
            steps.append((0, 0, 0, len(chunk) // 2, chunk))
        for n_ns, n_cp, n_bl, n_wr, items in steps:
            await link.copy_in(keys=keys, args=[n_ns, n_cp, n_bl, n_wr, *items])
        await link.client.hset(self._registry, key_of(target), target)
        runs = {value.split(b"\n", 1)[0].decode() for value in values.values()} - {""}
        for run in runs:
            await link.client.sadd(self._run_set(run), target)

    # -- reads --------------------------------------------------------------------------------

    async def read(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        *,
        checkpoint_id: str | None = None,
        after: Cursor | None = None,
        count: int | None = None,
        details: bool = True,
    ) -> list[Head]:
        link = self._links.get()
        if thread_id is not None:
            threads = [thread_id]
        else:
            found: dict[bytes, bytes] = await link.client.hgetall(self._registry)  # type: ignore[assignment]
            threads = sorted(value.decode() for value in found.values())
        nsk = key_of(checkpoint_ns) if checkpoint_ns is not None else ""
        mode = "id" if checkpoint_id is not None else "scan"
        mark = (
            checkpoint_id if checkpoint_id is not None else (after.checkpoint_id if after else "")
        )
        # The cursor bound is inclusive: one row per namespace may sit on it; drop it here.
        limit = -1 if count is None else count + 1
        heads: list[Head] = []
        for thread in threads:
            args = [mode, "1" if details else "0", limit, nsk, mark]
            heads += _heads(thread, await link.read(keys=self.keys(thread), args=args))
        if after is not None:
            heads = [h for h in heads if after.before(h.checkpoint_id, h.ns_key, h.thread_key)]
        heads.sort(key=lambda h: (h.checkpoint_id, h.ns_key, h.thread_key), reverse=True)
        return heads if count is None else heads[:count]

    async def details(self, heads: Sequence[Head]) -> None:
        link = self._links.get()
        by_thread: dict[str, list[Head]] = {}
        for head in heads:
            by_thread.setdefault(head.thread_id, []).append(head)
        for thread_id, group in by_thread.items():
            members = [f"{h.ns_key}:{h.checkpoint_id}" for h in group]
            reply = await link.read(
                keys=self.keys(thread_id), args=["members", "1", -1, "", "", *members]
            )
            loaded = {(h.checkpoint_ns, h.checkpoint_id): h for h in _heads(thread_id, reply)}
            for head in group:
                found = loaded.get((head.checkpoint_ns, head.checkpoint_id))
                if found is not None:
                    head.writes, head.blobs = found.writes, found.blobs

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._links.aclose()

    @contextlib.contextmanager
    def map_errors(self) -> Iterator[None]:
        with map_redis_errors(
            self._url,
            timeout=self._socket_timeout,
            prefix=self.prefix,
            owner=_OWNER,
            bound_to="the client passed in",
        ):
            yield


def _record(head: Head) -> bytes:
    header = json.dumps([head.parent_id, list(head.refs)]).encode()
    return b"\n".join((header, head.document, head.metadata))


def _heads(thread_id: str, reply: bytes) -> list[Head]:
    """Decode the read script's reply: length-framed items (see `_saver_lua.READ`)."""
    items = _frames(reply)
    heads = []
    at = 0
    while at < len(items):
        member, ns, record = items[at : at + 3]
        at += 3
        blobs_count = int(items[at])
        blobs = items[at + 1 : at + 1 + 2 * blobs_count]
        at += 1 + 2 * blobs_count
        writes_count = int(items[at])
        writes = items[at + 1 : at + 1 + 2 * writes_count]
        at += 1 + 2 * writes_count
        heads.append(_head(thread_id, member, ns, record, blobs, writes))
    return heads


def _frames(reply: bytes) -> list[bytes]:
    items = []
    at, end = 0, len(reply)
    while at < end:
        size = int.from_bytes(reply[at : at + 4], "big")
        items.append(reply[at + 4 : at + 4 + size])
        at += 4 + size
    return items


def _head(
    thread_id: str,
    member: bytes,
    ns: bytes,
    record: bytes,
    blobs: Sequence[bytes] = (),
    writes: Sequence[bytes] = (),
) -> Head:
    """Decode one checkpoint of the read script's reply."""
    checkpoint_id = member[33:].decode()
    head = Head(thread_id, ns.decode(), checkpoint_id, None, b"", b"", ())
    try:
        header, head.document, head.metadata = record.split(b"\n", 2)
        parent, refs = json.loads(header)
        head.parent_id = parent if isinstance(parent, str) else None
        head.refs = tuple(str(ref) for ref in refs)
        for field, packed in zip(blobs[::2], blobs[1::2], strict=True):
            type_, data = packed.split(b"\n", 1)
            key = field[33:].decode()
            head.blobs[key] = Blob(key, type_.decode(), data)
        for name, packed in zip(writes[::2], writes[1::2], strict=True):
            _, task_id, idx = name.split(b"\x00")
            meta, data = packed.split(b"\n", 1)
            channel, type_, path = json.loads(meta)
            head.writes.append(Write(task_id.decode(), int(idx), channel, type_, data, path))
    except (ValueError, TypeError) as exc:
        raise CorruptCheckpoint(
            thread_id, head.checkpoint_ns, checkpoint_id, f"the stored entry is malformed: {exc}"
        ) from None
    return head
