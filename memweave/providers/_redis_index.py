"""The sharded sessions index behind `RedisChatHistoryProvider`: listing pages, the expiry
purge and the prune sweep, each in steps of bounded size.

The index is only a listing aid: a member whose session keys are gone (cleared by a
racing writer, evicted, expired) is filtered out when listed and dropped by the purge or the
prune. What must never happen is the reverse, a live session missing from the index, so every
removal of a member that is not done inside the session's own script is followed by a check
of its keys and a re-add when they exist (`unindex`), and the purge acts on a member only if
its score is still the one it read (a re-created session was scored anew).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from memweave.providers import _redis_scripts as scripts
from memweave.providers._redis_scripts import command
from memweave.providers.base import BATCH_SIZE

__all__ = ["SHARDS", "SessionIndex", "SessionKeys", "Shard"]

logger = logging.getLogger(__name__)

SHARDS = 16
"""Index shards; each has its own hash tag, so in a Cluster they spread over the masters."""

_LIST_ROUND = 1000  # ids per shard per round when listing without a limit
_MAINTENANCE = 64  # expired members one opportunistic purge step looks at


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of the index: a lexical set of session ids and a set of expiry times."""

    sessions: bytes
    expiry: bytes

    @property
    def keys(self) -> list[bytes]:
        return [self.sessions, self.expiry]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The key names one session's scripts need."""

    session: tuple[bytes, bytes, bytes, bytes, bytes]
    """msgs, meta, ids, sys, info."""
    shard: Shard
    """The index shard listing the session."""
    script: tuple[bytes, ...]
    """What session scripts get as KEYS: the session's keys, plus on a single server its
    shard and the legacy index, so the script keeps the index in step itself."""

    @property
    def msgs(self) -> bytes:
        return self.session[0]

    @property
    def info(self) -> bytes:
        return self.session[4]


def text(value: bytes | str) -> str:
    """A reply as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: str) -> bytes:
    # `after` and `prefix` are arbitrary str; surrogatepass keeps code point order in bytes.
    return value.encode("utf-8", "surrogatepass")


def lex_bounds(prefix: str | None, after: str | None) -> tuple[bytes, bytes]:
    """`ZRANGEBYLEX` bounds for ids starting with `prefix` and sorting after `after`."""
    low, high = b"-", b"+"
    if prefix is not None:
        raw = _raw(prefix)
        # UTF-8 never holds 0xff, so every id starting with `raw` sorts below `raw + 0xff`.
        low, high = b"[" + raw, b"(" + raw + b"\xff"
    if after is not None and (prefix is None or _raw(after) >= _raw(prefix)):
        low = b"(" + _raw(after)
    return low, high


class SessionIndex:
    """The index shards of one key prefix, and the bounded steps that read and clean them."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str,
        *,
        cluster: bool,
        keys_of: Callable[[str], SessionKeys],
    ) -> None:
        self._client = client
        self._cluster = cluster
        self._keys_of = keys_of
        self.shards = [
            Shard(
                f"{prefix}:{{{prefix}:ix{n}}}:sessions".encode(),
                f"{prefix}:{{{prefix}:ix{n}}}:expiry".encode(),
            )
            for n in range(SHARDS)
        ]
        legacy = f"{prefix}:{{{prefix}}}:".encode()
        self.legacy = Shard(legacy + b"sessions", legacy + b"expiry")
        """The unsharded index of earlier releases: read, cleaned, never added to."""
        self.all = [*self.shards, self.legacy]
        self._maintained = 0

    def shard_for(self, tag: str) -> Shard:
        """The shard of the session whose hash tag (a hex digest) is `tag`."""
        return self.shards[int(tag[:8], 16) % SHARDS]

    # -- listing ----------------------------------------------------------------------------

    async def page(self, prefix: str | None, after: str | None, limit: int | None) -> list[str]:
        """The smallest live ids in range, at most `limit` (None: all, a round at a time).

        A round reads a bounded range of every shard, O(limit) ids in all, and checks that
        the candidates' keys exist; another round runs only when the shards' ranges did not
        reach far enough or dead members took places."""
        low, high = lex_bounds(prefix, after)
        found: list[str] = []
        maintained: Shard | None = self.all[self._maintained % len(self.all)]
        self._maintained += 1
        while True:
            want = _LIST_ROUND if limit is None else limit - len(found)
            # Ids spread evenly over the shards (by digest), so about want/16 of each shard's
            # ids are among the smallest `want`; read twice that, and go on if that fell short.
            per_shard = min(want, 2 * want // SHARDS + 8)
            calls = [
                command("zrangebylex", shard.sessions, low, high, 0, per_shard)
                for shard in self.all
            ]
            if maintained is not None:
                calls.append(scripts.EXPIRED.call([maintained.expiry], [_MAINTENANCE]))
            replies = await scripts.pipelined(self._client, calls)
            expired = replies.pop() if maintained is not None else []
            pages = [[text(m) for m in page] for page in replies]
            # A shard that filled its page may hold more past its last id: only ids up to the
            # smallest such last id are known to be the smallest overall.
            horizon = min((page[-1] for page in pages if len(page) == per_shard), default=None)
            merged = sorted({m for page in pages for m in page})
            if horizon is not None:
                merged = [m for m in merged if m <= horizon]
            candidates = merged[:want]
            found += await self._live(candidates)
            if maintained is not None and expired:
                await self._maintain(maintained, expired)
            maintained = None
            exhausted = horizon is None and len(merged) <= want
            if exhausted or not candidates or (limit is not None and len(found) >= limit):
                return found
            low = b"(" + candidates[-1].encode()

    async def _live(self, candidates: Sequence[str]) -> list[str]:
        exists = await scripts.pipelined(
            self._client, [command("exists", self._keys_of(sid).msgs) for sid in candidates]
        )
        return [sid for sid, n in zip(candidates, exists, strict=True) if n]

    # -- purge ------------------------------------------------------------------------------

    async def touch(self, shard: Shard, session_id: str, pttl: int, scan: int) -> list[Any]:
        """List a session in its shard; return up to `scan` expired members of the shard."""
        found = await scripts.TOUCH(self._client, shard.keys, [session_id, pttl, scan])
        return list(found)

    async def purge_expired(self) -> int:
        """Drop every expired member whose keys are gone, `BATCH_SIZE` per step."""
        dropped = 0
        for shard in self.all:
            while True:
                expired = await scripts.EXPIRED(self._client, [shard.expiry], [BATCH_SIZE])
                dropped += await self.settle(shard, expired)
                if len(expired) < 2 * BATCH_SIZE:
                    break
        return dropped

    async def settle(self, shard: Shard, expired: Sequence[Any]) -> int:
        """Check the keys of expired members (`member, score, ...`): drop the dead ones and
        re-score those whose ttl was renewed. Returns how many were dropped."""
        members = [text(m) for m in expired[0::2]]
        if not members:
            return 0
        pttls = await scripts.pipelined(
            self._client, [command("pttl", self._keys_of(sid).msgs) for sid in members]
        )
        args: list[Any] = []
        for sid, score, pttl in zip(members, expired[1::2], pttls, strict=True):
            args += (sid, score, pttl)
        return int(await scripts.SETTLE(self._client, shard.keys, args))

    async def _maintain(self, shard: Shard, expired: Sequence[Any]) -> None:
        """An opportunistic purge step; a client without write permission skips it."""
        try:
            await self.settle(shard, expired)
        except ResponseError as exc:
            if not str(exc).startswith("NOPERM"):
                raise
            logger.debug("skipping the sessions index purge: %s", exc)

    async def unindex(self, session_ids: Sequence[str]) -> None:
        """Drop sessions from the index (their shard and the legacy one), then list again
        those whose keys exist after all: a writer re-created them meanwhile."""
        await self._unlist(session_ids)
        await self._relist(session_ids)

    async def _unlist(self, session_ids: Sequence[str]) -> None:
        if not session_ids:
            return
        by_shard: dict[Shard, list[str]] = {}
        for sid in session_ids:
            by_shard.setdefault(self._keys_of(sid).shard, []).append(sid)
        by_shard.setdefault(self.legacy, []).extend(session_ids)
        await scripts.pipelined(
            self._client,
            [scripts.UNINDEX.call(shard.keys, members) for shard, members in by_shard.items()],
        )

    async def _relist(self, session_ids: Sequence[str]) -> None:
        if not session_ids:
            return
        pttls = await scripts.pipelined(
            self._client, [command("pttl", self._keys_of(sid).msgs) for sid in session_ids]
        )
        alive = [(sid, int(p)) for sid, p in zip(session_ids, pttls, strict=True) if p != -2]
        await scripts.pipelined(
            self._client,
            [scripts.TOUCH.call(self._keys_of(sid).shard.keys, [sid, p, 0]) for sid, p in alive],
        )

    # -- prune ------------------------------------------------------------------------------

    async def prune(self, older_than_ms: int, *, dry_run: bool) -> int:
        """Walk every shard `BATCH_SIZE` ids at a time; delete (or count) the sessions last
        updated before the cutoff. Returns how many."""
        seconds, micros = await self._client.time()
        cutoff = int(seconds) * 1000 + int(micros) // 1000 - older_than_ms
        total = 0
        for shard in self.all:
            low = b"-"
            while True:
                page = await self._client.zrangebylex(
                    shard.sessions, low, b"+", start=0, num=BATCH_SIZE
                )
                ids = [text(m) for m in page]
                if not ids:
                    break
                low = b"(" + ids[-1].encode()
                total += await self._prune_batch(shard, ids, cutoff, dry_run)
                if len(ids) < BATCH_SIZE:
                    break
        return total

    async def _prune_batch(
        self, shard: Shard, ids: Sequence[str], cutoff: int, dry_run: bool
    ) -> int:
        legacy = shard is self.legacy
        calls: list[scripts.Call] = []
        for sid in ids:
            keys = self._keys_of(sid)
            calls += (command("hget", keys.info, "u"), command("exists", keys.msgs))
            if legacy:
                calls.append(command("zscore", keys.shard.sessions, sid))
        replies = await scripts.pipelined(self._client, calls)
        step = 3 if legacy else 2
        stale, unstamped, ghosts, moved = [], [], [], []
        for i, sid in enumerate(ids):
            updated, exists = replies[i * step], replies[i * step + 1]
            if legacy and replies[i * step + 2] is not None:
                moved.append(sid)  # listed in its shard too; counted there
            elif not exists:
                ghosts.append(sid)
            elif updated is None:
                unstamped.append(sid)
            elif int(updated) < cutoff:
                stale.append(sid)
        if dry_run:
            return len(stale)
        if moved:
            await scripts.UNINDEX(self._client, self.legacy.keys, moved)
        await scripts.pipelined(
            self._client, [scripts.STAMP.call(self._keys_of(sid).session, []) for sid in unstamped]
        )
        await self.unindex(ghosts)
        return await self._delete_stale(stale, cutoff)

    async def _delete_stale(self, stale: Sequence[str], cutoff: int) -> int:
        if not stale:
            return 0
        if self._cluster:
            # The index is in other slots: unlist first, so a writer re-creating a session
            # after its delete lists it again, and relist the ones the script kept.
            await self._unlist(stale)
        deleted = await scripts.pipelined(
            self._client,
            [scripts.PRUNE_ONE.call(self._keys_of(sid).script, [sid, cutoff]) for sid in stale],
        )
        if self._cluster:
            await self._relist([sid for sid, d in zip(stale, deleted, strict=True) if not d])
        return sum(int(d) for d in deleted)
