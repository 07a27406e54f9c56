"""The Lua scripts behind `RedisChatHistoryProvider`, each one atomic step on one session.

A session lives in four keys sharing one hash tag: `msgs` (a list of stored JSON entries),
`meta` (a parallel list of `<role initial><message id>`, so trimming can see roles and forget
ids without decoding JSON), `ids` (a set of stored message ids, for idempotent appends) and
`sys` (a copy of the system entries of `msgs`, in order, so a reduced read gets every system
message without scanning a long session; absent while there are none). Every script that
changes `msgs` keeps `sys` in step: the system entries trimmed from the head of `msgs` are the
head of `sys`, and the n-th `s` entry of `meta` is the n-th entry of `sys`. An append that
starts a session from empty drops any `sys` left behind (say, by keys expiring apart).
The sessions index is two sorted sets under the prefix's own tag: `sessions` (every member at
score 0, so `ZRANGEBYLEX` answers prefix queries) and `expiry` (session -> expiry in ms on the
server clock, for sessions with a ttl).

Scripts that name the index keys next to a session's keys (`APPEND_INDEXED`, `CLEAR_INDEXED`)
are only used on a single Redis server: in a cluster the index lives in another slot, so the
provider runs the session part and the index part as two scripts instead.
"""

from __future__ import annotations

__all__ = [
    "APPEND",
    "APPEND_INDEXED",
    "CLEAR_INDEXED",
    "INDEX_TOUCH",
    "LIST_SESSIONS",
    "REMOVE",
    "REPLACE",
    "UNINDEX",
]

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

local function expire_all(ms)
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
  redis.call('PEXPIRE', KEYS[3], ms)
  redis.call('PEXPIRE', KEYS[4], ms)
end

local SYSTEM = string.byte('s')

-- The data of the system records among (tags, data).
local function system_data(tags, data)
  local out = {}
  for i = 1, #tags do
    if string.byte(tags[i]) == SYSTEM then out[#out + 1] = data[i] end
  end
  return out
end
"""

# KEYS: msgs, meta, ids, sys [, sessions, expiry]. ARGV: max_messages (0 = none), ttl ms (0 = none)
# [, session id], then (role initial .. id, data) per record. Leaves `len` (the stored length)
# and `created` (the session was empty before) for the caller.
_APPEND_BODY = """
local max_messages = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local tags, data = {}, {}
if #ARGV == FIRST_RECORD + 1 then
  if redis.call('SADD', KEYS[3], string.sub(ARGV[FIRST_RECORD], 2)) == 1 then
    tags[1], data[1] = ARGV[FIRST_RECORD], ARGV[FIRST_RECORD + 1]
  end
elseif #ARGV > FIRST_RECORD then
  -- one membership query per 1000 ids instead of one SADD per id
  for first = FIRST_RECORD, #ARGV, 2000 do
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
if created then redis.call('DEL', KEYS[4]) end
local system = system_data(tags, data)
if #system > 0 then
  chunked('RPUSH', KEYS[4], system)
  local pttl = redis.call('PTTL', KEYS[1])
  if ttl == 0 and pttl > 0 then redis.call('PEXPIRE', KEYS[4], pttl) end
end
if max_messages > 0 and len > max_messages then
  local drop = len - max_messages
  local gone = redis.call('LRANGE', KEYS[2], 0, drop - 1)
  -- a tool result whose assistant call is cut must not become the head
  while drop < len do
    local head = redis.call('LINDEX', KEYS[2], drop)
    if string.sub(head, 1, 1) ~= 't' then break end
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
if ttl > 0 and len > 0 then expire_all(ttl) end
"""

# KEYS: sessions, expiry. ARGV: session id, ttl ms (0 = keep the current expiry).
_TOUCH_BODY = """
local function touch(sessions, expiry, sid, ttl)
  redis.call('ZADD', sessions, 0, sid)
  if ttl > 0 then
    redis.call('ZADD', expiry, now_ms() + ttl, sid)
  else
    local at = redis.call('ZSCORE', expiry, sid)
    if at and tonumber(at) <= now_ms() then redis.call('ZREM', expiry, sid) end
  end
end
"""

APPEND = _HELPERS + _APPEND_BODY.replace("FIRST_RECORD", "3") + "return len\n"
"""Dedup by id, append, trim and renew the ttl of one session (keys: msgs, meta, ids, sys)."""

APPEND_INDEXED = (
    _HELPERS
    + _TOUCH_BODY
    + _APPEND_BODY.replace("FIRST_RECORD", "4")
    + """
if len == 0 then
  redis.call('ZREM', KEYS[5], ARGV[3])
  redis.call('ZREM', KEYS[6], ARGV[3])
elseif created or ttl > 0 then
  -- this script keeps the index in step, so a session that already held messages is listed
  touch(KEYS[5], KEYS[6], ARGV[3], ttl)
end
return len
"""
)
"""`APPEND` plus the index update, for a single server (keys: msgs, meta, ids, sys,
sessions, expiry; the session id is ARGV[3])."""

INDEX_TOUCH = (
    _HELPERS
    + _TOUCH_BODY
    + """
touch(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
return 1
"""
)
"""List a session in the index, renewing its expiry when a ttl (ms) is given."""

UNINDEX = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
"""Drop a session from the index (keys: sessions, expiry)."""

CLEAR_INDEXED = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""
"""Delete a session and drop it from the index, for a single server (keys: msgs, meta, ids,
sys, sessions, expiry)."""

LIST_SESSIONS = (
    _HELPERS
    + """
local now = now_ms()
-- lazy cleanup, bounded so one call never stalls the server on a backlog
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
end
local found = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2])
if redis.call('ZCARD', KEYS[2]) == 0 then return found end
local live = {}
for _, sid in ipairs(found) do
  local at = redis.call('ZSCORE', KEYS[2], sid)
  if not at or tonumber(at) > now then live[#live + 1] = sid end
end
return live
"""
)
"""Index members between two `ZRANGEBYLEX` bounds whose expiry has not passed (keys:
sessions, expiry)."""

REMOVE = (
    _HELPERS
    + """
local doomed = {}
for i = 2, #ARGV do doomed[ARGV[i]] = true end
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
if #hits == 0 then return #tags end

-- Delete the entries at the given ascending positions of each list.
local function delete_at(positions, ...)
  if #positions == 0 then return end
  for _, key in ipairs({...}) do
    if positions[#positions] == #positions - 1 then
      redis.call('LTRIM', key, #positions, -1)
    else
      -- mark then sweep, so the kept entries are never rewritten
      for _, at in ipairs(positions) do redis.call('LSET', key, at, ARGV[1]) end
      redis.call('LREM', key, 0, ARGV[1])
    end
  end
end

delete_at(hits, KEYS[1], KEYS[2])
delete_at(system_hits, KEYS[4])
chunked('SREM', KEYS[3], gone)
return #tags - #hits
"""
)
"""Delete the entries with the given ids (ARGV[2:]); ARGV[1] is a one-off tombstone value
(keys: msgs, meta, ids, sys). Returns the stored length left."""

REPLACE = (
    _HELPERS
    + """
local last = redis.call('LINDEX', KEYS[2], -1)
if ARGV[1] == '1' then
  if not last or string.sub(last, 2) ~= ARGV[2] then return {0, 0} end
elseif last then
  return {0, 0}
end
local pttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local ids, tags, data = {}, {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = string.sub(ARGV[i], 2)
  tags[#tags + 1] = ARGV[i]
  data[#data + 1] = ARGV[i + 1]
end
chunked('SADD', KEYS[3], ids)
chunked('RPUSH', KEYS[2], tags)
chunked('RPUSH', KEYS[1], data)
chunked('RPUSH', KEYS[4], system_data(tags, data))
if pttl > 0 and #data > 0 then expire_all(pttl) end
return {1, pttl}
"""
)
"""Replace a session's entries if its newest id is ARGV[2] (ARGV[1] == "1") or it is empty
(ARGV[1] == "0"); records follow as in `APPEND` (keys: msgs, meta, ids, sys). Returns
`{replaced, previous pttl}`."""
