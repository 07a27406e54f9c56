"""The Lua scripts behind `RedisChatHistoryProvider` and the helpers that run them.

A session lives in five keys sharing one hash tag: `msgs` (a list of stored JSON entries),
`meta` (a parallel list of `<role initial><message id>`, so trimming, deleting and paging can
see roles and ids without decoding JSON), `ids` (a set of stored message ids, for idempotent
appends and O(1) cursor misses), `sys` (a copy of the system entries of `msgs`, in order, so
a reduced read gets every system message without scanning a long session; absent while there
are none) and `info` (a hash: `c` created and `u` updated, in ms on the server clock; absent
for sessions stored before it existed). Every script that changes `msgs` keeps `sys` in step:
the system entries trimmed from the head of `msgs` are the head of `sys`, and the n-th `s`
entry of `meta` is the n-th entry of `sys`. A session left without entries loses every key.

The sessions index is sharded: shard `n` is two sorted sets under the tag `{<prefix>:ix<n>}`,
`sessions` (members at score 0, so `ZRANGEBYLEX` answers prefix and cursor queries) and
`expiry` (session -> expiry in ms, written when the session is created with a ttl; sliding
renewals leave it stale, and the purge re-scores a member whose keys still live). The
unsharded index of earlier releases (tag `{<prefix>}`) is read as one more shard.

Session scripts take the five session keys; on a single server four index keys follow (the
session's shard, then the legacy index) and the script updates the index itself. In a
Cluster the index is in other slots, so the scripts report how membership changed (`1`
created, `-1` emptied) and the provider updates the index with the index scripts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

__all__ = [
    "APPEND",
    "CLEAR",
    "DELETE",
    "EXPIRED",
    "PRUNE_ONE",
    "READ_PAGE",
    "REMOVE",
    "REPLACE",
    "SESSION_INFO",
    "SETTLE",
    "STAMP",
    "TOUCH",
    "TRUNCATE",
    "UNINDEX",
    "Call",
    "Script",
    "command",
    "pipelined",
]


class Script:
    """A Lua script and its SHA1, the name `EVALSHA` runs it by once the server has it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        _BY_SHA[self.sha] = self

    async def __call__(
        self, client: Redis | RedisCluster, keys: Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        """Run the script; load it first if the server lost its script cache."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restart, failover or SCRIPT FLUSH emptied the cache: load, retry.
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def call(self, keys: Sequence[bytes], args: Sequence[Any]) -> Call:
        """A run of the script, for `pipelined`."""
        return ("evalsha", (self.sha, len(keys), *keys, *args))


_BY_SHA: dict[str, Script] = {}

Call = tuple[str, tuple[Any, ...]]
"""One command for `pipelined`: a pipeline method's name and its arguments."""


def command(name: str, *args: Any) -> Call:
    """A command for `pipelined`: `command("exists", key)`."""
    return (name, args)


async def pipelined(client: Redis | RedisCluster, calls: Sequence[Call]) -> list[Any]:
    """Send `calls` in one pipeline (one round trip per node) and return their replies.

    Scripts that failed with NOSCRIPT are loaded and only those calls are sent again, so the
    others (which may have written) never run twice. Any other error is raised.
    """
    if not calls:
        return []
    results = await _send(client, calls)
    retry = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if retry:
        for sha in {calls[i][1][0] for i in retry}:
            await client.script_load(_BY_SHA[sha].source)
        again = await _send(client, [calls[i] for i in retry])
        for i, result in zip(retry, again, strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


async def _send(client: Redis | RedisCluster, calls: Sequence[Call]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for name, args in calls:
        getattr(pipe, name)(*args)
    return list(await pipe.execute(raise_on_error=False))


# Lua's unpack() is limited by the C stack (about 8000 values), so bulk commands go in chunks.
_HELPERS = """
local function chunked(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local TOOL, SYSTEM = string.byte('t'), string.byte('s')
local INDEXED = #KEYS > 5

local function expire_all(ms)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ms) end
end

-- A key written into a session that has a ttl takes the session's expiry.
local function follow_ttl(key)
  if redis.call('PTTL', key) == -1 then
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
  end
end

local function stamp_updated()
  redis.call('HSET', KEYS[5], 'u', now_ms())
  follow_ttl(KEYS[5])
end

local function drop_session()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
end

local function touch(sessions, expiry, sid, pttl)
  redis.call('ZADD', sessions, 0, sid)
  if pttl > 0 then
    redis.call('ZADD', expiry, now_ms() + pttl, sid)
  else
    redis.call('ZREM', expiry, sid)
  end
end

local function expired(expiry, limit)
  return redis.call('ZRANGEBYSCORE', expiry, '-inf', now_ms(), 'WITHSCORES', 'LIMIT', 0, limit)
end

local function index_drop(sid)
  if INDEXED then
    for i = 6, 9 do redis.call('ZREM', KEYS[i], sid) end
  end
end

-- The data of the system records among (tags, data).
local function system_data(tags, data)
  local out = {}
  for i = 1, #tags do
    if string.byte(tags[i]) == SYSTEM then out[#out + 1] = data[i] end
  end
  return out
end

-- Delete the entries at the given ascending 0-based positions of a list of length len.
local function delete_at(key, positions, len, tombstone)
  local n = #positions
  if n == 0 then return end
  if positions[n] == n - 1 then
    redis.call('LTRIM', key, n, -1)
  elseif positions[1] == len - n then
    redis.call('LTRIM', key, 0, -n - 1)
  else
    -- mark then sweep, so the kept entries are never rewritten
    for _, at in ipairs(positions) do redis.call('LSET', key, at, tombstone) end
    redis.call('LREM', key, 0, tombstone)
  end
end

-- Position of message `id` in `meta`: the hint if it still holds the id, else LPOS per role
-- initial from the preferred end, over windows growing 16-fold, so a cursor near that end
-- costs its distance rather than four scans of the whole list.
local function locate(id, hint, initial, from_tail)
  if hint >= 0 then
    local at = redis.call('LINDEX', KEYS[2], hint)
    if at and string.sub(at, 2) == id then return hint end
  end
  local rank = from_tail and -1 or 1
  if initial ~= '' then
    local p = redis.call('LPOS', KEYS[2], initial .. id, 'RANK', rank)
    if p then return p end
  end
  local len = redis.call('LLEN', KEYS[2])
  local window = 1024
  while true do
    local maxlen = window < len and window or 0
    for _, role in ipairs({'u', 'a', 't', 's'}) do
      local p = redis.call('LPOS', KEYS[2], role .. id, 'RANK', rank, 'MAXLEN', maxlen)
      if p then return p end
    end
    if maxlen == 0 then return nil end
    window = window * 16
  end
end
"""


def _script(body: str) -> Script:
    return Script(_HELPERS + body)


APPEND = _script(
    """
local max_messages = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local sid = ARGV[3]
local scan = tonumber(ARGV[4])
local FIRST = 5
local tags, data = {}, {}
if #ARGV == FIRST + 1 then
  if redis.call('SADD', KEYS[3], string.sub(ARGV[FIRST], 2)) == 1 then
    tags[1], data[1] = ARGV[FIRST], ARGV[FIRST + 1]
  end
elseif #ARGV > FIRST then
  -- one membership query per 1000 ids instead of one SADD per id
  for first = FIRST, #ARGV, 2000 do
    local last = math.min(first + 1999, #ARGV)
    local ids = {}
    for i = first, last, 2 do ids[#ids + 1] = string.sub(ARGV[i], 2) end
    local known = redis.call('SMISMEMBER', KEYS[3], unpack(ids))
    local fresh = {}
    for j = 1, #ids do
      if known[j] == 0 then
        local i = first + 2 * (j - 1)
        fresh[#fresh + 1] = ids[j]
        tags[#tags + 1], data[#data + 1] = ARGV[i], ARGV[i + 1]
      end
    end
    chunked('SADD', KEYS[3], fresh)
  end
end
local len
if #data > 0 then
  chunked('RPUSH', KEYS[2], tags)
  for i = 1, #data, 1000 do
    len = redis.call('RPUSH', KEYS[1], unpack(data, i, math.min(i + 999, #data)))
  end
else
  len = redis.call('LLEN', KEYS[1])
end
local created = #data > 0 and len == #data
if created then
  redis.call('DEL', KEYS[4])
  local now = now_ms()
  redis.call('HSET', KEYS[5], 'c', now, 'u', now)
elseif #data > 0 then
  redis.call('HSET', KEYS[5], 'u', now_ms())
end
local system = system_data(tags, data)
if #system > 0 then chunked('RPUSH', KEYS[4], system) end
if max_messages > 0 and len > max_messages then
  local drop = len - max_messages
  local gone = redis.call('LRANGE', KEYS[2], 0, drop - 1)
  -- a tool result whose assistant call is cut must not become the head
  while drop < len do
    local head = redis.call('LINDEX', KEYS[2], drop)
    if string.byte(head) ~= TOOL then break end
    gone[#gone + 1] = head
    drop = drop + 1
  end
  local system_gone = 0
  for i = 1, #gone do
    if string.byte(gone[i]) == SYSTEM then system_gone = system_gone + 1 end
    gone[i] = string.sub(gone[i], 2)
  end
  chunked('SREM', KEYS[3], gone)
  redis.call('LTRIM', KEYS[1], drop, -1)
  redis.call('LTRIM', KEYS[2], drop, -1)
  if system_gone > 0 then redis.call('LTRIM', KEYS[4], system_gone, -1) end
  len = len - drop
end
if ttl > 0 and len > 0 then
  expire_all(ttl)
elseif #data > 0 then
  follow_ttl(KEYS[4])
  follow_ttl(KEYS[5])
end
local pttl = len > 0 and redis.call('PTTL', KEYS[1]) or -2
local found = {}
if created and INDEXED then
  touch(KEYS[6], KEYS[7], sid, pttl)
  if scan > 0 then found = expired(KEYS[7], scan) end
end
return {len, created and 1 or 0, pttl, found}
"""
)
"""Dedup by id, append, trim, stamp the times and renew the ttl of one session. ARGV:
max_messages (0 = none), ttl ms (0 = none), session id, how many expired index members to
return when the session was created (0 = none), then (role initial .. id, data) per record.
Returns `{length, created, pttl, expired (member, score)...}`."""

READ_PAGE = _script(
    """
local limit = tonumber(ARGV[2])
local start, stop
if ARGV[1] == 'n' then
  start, stop = 0, limit - 1
else
  if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 0 then return false end
  local at = locate(ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[1] == 'b')
  if not at then return false end
  if ARGV[1] == 'a' then
    start, stop = at + 1, at + limit
  else
    if at == 0 then return {0, {}, {}} end
    start, stop = math.max(0, at - limit), at - 1
  end
end
local tags = redis.call('LRANGE', KEYS[2], start, stop)
return {start, tags, redis.call('LRANGE', KEYS[1], start, stop)}
"""
)
"""One page of a session (keys: msgs, meta, ids). ARGV: mode (`n` from the start, `a` after
the cursor, `b` before it), limit, cursor id, hinted position (-1 = none), hinted role
initial (`""` = none). Returns nil when the cursor is not stored, else `{first position,
tags, data}`."""

SESSION_INFO = Script(
    """
local len = redis.call('LLEN', KEYS[1])
if len == 0 then return {0} end
return {len, redis.call('HGET', KEYS[2], 'c'), redis.call('HGET', KEYS[2], 'u')}
"""
)
"""The session's length and its created/updated times (keys: msgs, info)."""

DELETE = _script(
    """
local named, listed = {}, {}
for i = 3, #ARGV do
  named[ARGV[i]] = true
  listed[#listed + 1] = ARGV[i]
end
local any = false
for i = 1, #listed, 1000 do
  local known = redis.call('SMISMEMBER', KEYS[3], unpack(listed, i, math.min(i + 999, #listed)))
  for _, k in ipairs(known) do if k == 1 then any = true end end
end
if not any then return {0, '', 0} end
local tags = redis.call('LRANGE', KEYS[2], 0, -1)
local hits, gone, system_hits = {}, {}, {}
local systems = 0
local owner_named = false
for i, tag in ipairs(tags) do
  local role = string.byte(tag)
  local id = string.sub(tag, 2)
  local hit = false
  if role == TOOL then
    if owner_named then
      hit = true
    elseif named[id] then
      -- the message that called it stays (or is gone), so it cannot go alone
      return {0, id, 0}
    end
  else
    owner_named = named[id] == true
    hit = owner_named
  end
  if role == SYSTEM then systems = systems + 1 end
  if hit then
    hits[#hits + 1] = i - 1
    gone[#gone + 1] = id
    if role == SYSTEM then system_hits[#system_hits + 1] = systems - 1 end
  end
end
if #hits == 0 then return {0, '', 0} end
if #hits == #tags then
  drop_session()
  index_drop(ARGV[1])
  return {#hits, '', -1}
end
delete_at(KEYS[1], hits, #tags, ARGV[2])
delete_at(KEYS[2], hits, #tags, ARGV[2])
delete_at(KEYS[4], system_hits, systems, ARGV[2])
chunked('SREM', KEYS[3], gone)
stamp_updated()
return {#hits, '', 0}
"""
)
"""Delete the named entries and the tool results each named non-tool entry owns. ARGV:
session id, a one-off tombstone value, then the ids. Returns `{deleted, orphan id or "",
change}`; an orphan means nothing was deleted."""

TRUNCATE = _script(
    """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return -1 end
local at = locate(ARGV[1], tonumber(ARGV[2]), ARGV[3], true)
if not at then return -1 end
local len = redis.call('LLEN', KEYS[2])
local keep = at + 1
while keep < len do
  local run = redis.call('LRANGE', KEYS[2], keep, keep + 99)
  local owned = true
  for _, tag in ipairs(run) do
    if string.byte(tag) ~= TOOL then owned = false break end
    keep = keep + 1
  end
  if not owned then break end
end
if keep >= len then return 0 end
local gone = redis.call('LRANGE', KEYS[2], keep, -1)
local system_gone = 0
for i = 1, #gone do
  if string.byte(gone[i]) == SYSTEM then system_gone = system_gone + 1 end
  gone[i] = string.sub(gone[i], 2)
end
chunked('SREM', KEYS[3], gone)
redis.call('LTRIM', KEYS[1], 0, keep - 1)
redis.call('LTRIM', KEYS[2], 0, keep - 1)
if system_gone > 0 then redis.call('LTRIM', KEYS[4], 0, -system_gone - 1) end
stamp_updated()
return #gone
"""
)
"""Delete every entry after the message ARGV[1] except the tool results directly after it.
ARGV: id, hinted position, hinted role initial. Returns how many went, or -1 when the id is
not stored."""

REMOVE = _script(
    """
local doomed = {}
for i = 3, #ARGV do doomed[ARGV[i]] = true end
local tags = redis.call('LRANGE', KEYS[2], 0, -1)
local hits, gone, system_hits = {}, {}, {}
local systems = 0
for i, tag in ipairs(tags) do
  local id = string.sub(tag, 2)
  local system = string.byte(tag) == SYSTEM
  if system then systems = systems + 1 end
  if doomed[id] then
    hits[#hits + 1] = i - 1
    gone[#gone + 1] = id
    if system then system_hits[#system_hits + 1] = systems - 1 end
  end
end
if #hits == 0 then return 0 end
if #hits == #tags then
  drop_session()
  index_drop(ARGV[1])
  return -1
end
delete_at(KEYS[1], hits, #tags, ARGV[2])
delete_at(KEYS[2], hits, #tags, ARGV[2])
delete_at(KEYS[4], system_hits, systems, ARGV[2])
chunked('SREM', KEYS[3], gone)
stamp_updated()
return 0
"""
)
"""Delete the entries with the given ids, nothing else. ARGV: session id, a one-off tombstone
value, then the ids. Returns the index change."""

REPLACE = _script(
    """
local last = redis.call('LINDEX', KEYS[2], -1)
if ARGV[2] == '1' then
  if not last or string.sub(last, 2) ~= ARGV[3] then return {0, 0, 0} end
elseif last then
  return {0, 0, 0}
end
local pttl = redis.call('PTTL', KEYS[1])
local created_at = redis.call('HGET', KEYS[5], 'c')
drop_session()
local ids, tags, data = {}, {}, {}
for i = 4, #ARGV, 2 do
  ids[#ids + 1] = string.sub(ARGV[i], 2)
  tags[#tags + 1] = ARGV[i]
  data[#data + 1] = ARGV[i + 1]
end
if #data == 0 then
  if last then index_drop(ARGV[1]) end
  return {1, last and -1 or 0, -2}
end
chunked('SADD', KEYS[3], ids)
chunked('RPUSH', KEYS[2], tags)
chunked('RPUSH', KEYS[1], data)
chunked('RPUSH', KEYS[4], system_data(tags, data))
local now = now_ms()
if not last then created_at = now end
redis.call('HSET', KEYS[5], 'u', now)
if created_at then redis.call('HSET', KEYS[5], 'c', created_at) end
if pttl > 0 then expire_all(pttl) end
if last then return {1, 0, pttl} end
if INDEXED then touch(KEYS[6], KEYS[7], ARGV[1], pttl) end
return {1, 1, pttl}
"""
)
"""Replace a session's entries if its newest id is ARGV[3] (ARGV[2] == "1") or it is empty
(ARGV[2] == "0"). ARGV[1] is the session id; records follow as in `APPEND`. Returns
`{replaced, change, pttl}`."""

CLEAR = _script(
    """
drop_session()
index_drop(ARGV[1])
return 1
"""
)
"""Delete a session and drop it from the index, on a single server (ARGV: session id)."""

PRUNE_ONE = _script(
    """
local updated = redis.call('HGET', KEYS[5], 'u')
if not updated or tonumber(updated) >= tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
drop_session()
index_drop(ARGV[1])
return 1
"""
)
"""Delete the session if it was last updated before ARGV[2] (ms); re-checked here, so a
session written during the sweep stays. ARGV[1] is the session id. Returns 1 if deleted."""

STAMP = _script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[5], 'u') == 1 then
  return 0
end
stamp_updated()
return 1
"""
)
"""Record a session stored without times as updated now (keys: the session's five)."""

TOUCH = _script(
    """
touch(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
if tonumber(ARGV[3]) > 0 then return expired(KEYS[2], tonumber(ARGV[3])) end
return {}
"""
)
"""List a session in one index shard (keys: sessions, expiry). ARGV: session id, its pttl
(-1 = none), how many expired members to return (0 = none)."""

UNINDEX = Script(
    """
for i = 1, #ARGV, 1000 do
  local sids = {unpack(ARGV, i, math.min(i + 999, #ARGV))}
  redis.call('ZREM', KEYS[1], unpack(sids))
  redis.call('ZREM', KEYS[2], unpack(sids))
end
return 1
"""
)
"""Drop sessions (ARGV) from one index shard (keys: sessions, expiry)."""

EXPIRED = _script(
    """
return expired(KEYS[1], tonumber(ARGV[1]))
"""
)
"""Up to ARGV[1] members of an expiry set whose time has passed, with their scores."""

SETTLE = _script(
    """
local dropped = 0
local now = now_ms()
for i = 1, #ARGV, 3 do
  local sid, seen, pttl = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  -- a score changed since it was read means the session was listed anew: leave it
  if redis.call('ZSCORE', KEYS[2], sid) == seen then
    if pttl == -2 then
      redis.call('ZREM', KEYS[1], sid)
      redis.call('ZREM', KEYS[2], sid)
      dropped = dropped + 1
    elseif pttl == -1 then
      redis.call('ZREM', KEYS[2], sid)
    else
      redis.call('ZADD', KEYS[2], now + pttl, sid)
    end
  end
end
return dropped
"""
)
"""Act on expired index members of one shard (keys: sessions, expiry) after their keys were
checked. ARGV: (session id, score as read, pttl of its entries) per member; pttl -2 drops
it, -1 forgets its expiry, more re-scores it. Returns how many were dropped."""
