"""The Lua scripts of the Redis storage of `MemweaveCheckpointSaver`.

Every thread script takes the thread's nine keys, in this order (all under one hash tag):

1. `ns`: hash, namespace key -> namespace (plus the field `delta` once a `DeltaChannel` is seen)
2. `cp`: hash, member -> stored checkpoint:
   `<JSON [parent id, blob keys]>\\n<document>\\n<metadata>`
3. `ix`: sorted set of members, all scored 0, so `BYLEX` ranges order a namespace by id
4. `rf`: hash, member -> `<run key>\\n<blob fields joined by spaces>`
5. `bl`: hash, blob field -> `<type>\\n<bytes>`
6. `rc`: hash, blob field -> how many checkpoints use it (the blob goes when it reaches 0)
7. `wx`: sorted set of write members (`<member>\\0<task id>\\0<idx>`)
8. `wr`: hash, write member -> `<JSON [channel, type, task path]>\\n<bytes>`
9. `rx`: sorted set of `<run key>:<member>`, the thread's checkpoints by run

A member is `<namespace key>:<checkpoint id>` and a blob field `<namespace key>:<blob key>`;
the keys are 32 hex digits (`_records.key_of`), so a namespace's members are exactly those
between `[<key>:` and `(<key>;`. Checkpoint and task ids hold no NUL (the saver checks), so a
member's writes are exactly those between `[<member>\\0` and `(<member>\\1`.
"""

from __future__ import annotations

__all__ = ["COPY_IN", "DROP_RUN", "PRUNE", "PUT", "PUT_WRITES", "READ", "REPLACE", "SNAPSHOT"]

_COMMON = r"""
local function parse(value)
  local nl = string.find(value, '\n', 1, true)
  return string.sub(value, 1, nl - 1), string.sub(value, nl + 1)
end
local function release(field)
  if redis.call('HINCRBY', KEYS[6], field, -1) <= 0 then
    redis.call('HDEL', KEYS[6], field)
    redis.call('HDEL', KEYS[5], field)
  end
end
local function drop(member)
  local value = redis.call('HGET', KEYS[4], member)
  if value then
    local run, refs = parse(value)
    for field in string.gmatch(refs, '%S+') do release(field) end
    if run ~= '' then redis.call('ZREM', KEYS[9], run .. ':' .. member) end
    redis.call('HDEL', KEYS[4], member)
  end
  redis.call('HDEL', KEYS[2], member)
  redis.call('ZREM', KEYS[3], member)
  local writes = redis.call('ZRANGEBYLEX', KEYS[7], '[' .. member .. '\0', '(' .. member .. '\1')
  for _, write in ipairs(writes) do
    redis.call('HDEL', KEYS[8], write)
    redis.call('ZREM', KEYS[7], write)
  end
end
local function tidy(nsk)
  local low, high = '[' .. nsk .. ':', '(' .. nsk .. ';'
  local left = redis.call('ZRANGEBYLEX', KEYS[3], low, high, 'LIMIT', 0, 1)
  if #left == 0 then
    redis.call('HDEL', KEYS[1], nsk)
  end
end
local function namespaces()
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if field ~= 'delta' then out[#out + 1] = field end
  end
  return out
end
"""

PUT = (
    _COMMON
    + r"""
-- ARGV: namespace key, namespace, member, record, rf value, delta flag, thread key,
-- thread id, then blob field / packed blob pairs. KEYS[10], KEYS[11] (one server only): the
-- thread registry and the run's thread set. Returns {thread was empty, run new to thread}.
local fresh = redis.call('EXISTS', KEYS[2]) == 0 and 1 or 0
local member = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'delta', '1') end
for i = 9, #ARGV, 2 do redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) end
local run, refs = parse(ARGV[5])
for field in string.gmatch(refs, '%S+') do redis.call('HINCRBY', KEYS[6], field, 1) end
local old = redis.call('HGET', KEYS[4], member)
if old then
  local old_run, old_refs = parse(old)
  for field in string.gmatch(old_refs, '%S+') do release(field) end
  if old_run ~= '' then redis.call('ZREM', KEYS[9], old_run .. ':' .. member) end
end
redis.call('HSET', KEYS[4], member, ARGV[5])
redis.call('HSET', KEYS[2], member, ARGV[4])
redis.call('ZADD', KEYS[3], 0, member)
local new_run = 0
if run ~= '' then
  local prior = '[' .. run .. ':'
  local seen = redis.call('ZRANGEBYLEX', KEYS[9], prior, '(' .. run .. ';', 'LIMIT', 0, 1)
  if #seen == 0 then new_run = 1 end
  redis.call('ZADD', KEYS[9], 0, run .. ':' .. member)
end
if #KEYS > 9 then
  redis.call('HSET', KEYS[10], ARGV[7], ARGV[8])
  if run ~= '' then redis.call('SADD', KEYS[11], ARGV[8]) end
end
return {fresh, new_run}
"""
)

PUT_WRITES = r"""
-- KEYS: write index, write hash. ARGV: triples of write member, packed write, replace flag.
for i = 1, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], 0, ARGV[i])
  elseif redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[1], 0, ARGV[i])
  end
end
return 0
"""

READ = (
    _COMMON
    + r"""
-- ARGV: mode ('id', 'scan' or 'members'), details ('1'/'0'), count (-1: all), namespace key
-- ('': every namespace), checkpoint id (mode 'id') or cursor id ('': none; inclusive), then
-- (mode 'members') the members. Per checkpoint, newest first within each namespace: its
-- member, namespace, record, then its blobs and its writes (each a count and pairs).
local mode, details, count = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local nss = ARGV[4] ~= '' and {ARGV[4]} or namespaces()
local members = {}
if mode == 'id' then
  for _, nsk in ipairs(nss) do
    local member = nsk .. ':' .. ARGV[5]
    if redis.call('HEXISTS', KEYS[2], member) == 1 then members[#members + 1] = member end
  end
elseif mode == 'scan' then
  for _, nsk in ipairs(nss) do
    local top = ARGV[5] ~= '' and ('[' .. nsk .. ':' .. ARGV[5]) or ('(' .. nsk .. ';')
    local found = redis.call('ZREVRANGEBYLEX', KEYS[3], top, '[' .. nsk .. ':', 'LIMIT', 0, count)
    for _, member in ipairs(found) do members[#members + 1] = member end
  end
else
  for i = 6, #ARGV do members[#members + 1] = ARGV[i] end
end
-- One bulk string, each item framed by its 4-byte length, so the client parses one reply.
local out = {}
local function put(value)
  out[#out + 1] = struct.pack('>I4', #value)
  out[#out + 1] = value
end
for _, member in ipairs(members) do
  local record = redis.call('HGET', KEYS[2], member)
  if record then
    put(member)
    put(redis.call('HGET', KEYS[1], string.sub(member, 1, 32)) or '')
    put(record)
    local blobs, writes = {}, {}
    if details then
      local value = redis.call('HGET', KEYS[4], member)
      if value then
        local _, refs = parse(value)
        for field in string.gmatch(refs, '%S+') do
          local blob = redis.call('HGET', KEYS[5], field)
          if blob then
            blobs[#blobs + 1] = field
            blobs[#blobs + 1] = blob
          end
        end
      end
      local found = redis.call('ZRANGEBYLEX', KEYS[7], '[' .. member .. '\0', '(' .. member .. '\1')
      for _, write in ipairs(found) do
        local packed = redis.call('HGET', KEYS[8], write)
        if packed then
          writes[#writes + 1] = write
          writes[#writes + 1] = packed
        end
      end
    end
    put(tostring(#blobs / 2))
    for _, item in ipairs(blobs) do put(item) end
    put(tostring(#writes / 2))
    for _, item in ipairs(writes) do put(item) end
  end
end
return table.concat(out)
"""
)

DROP_RUN = (
    _COMMON
    + r"""
-- ARGV: run key. Deletes the thread's checkpoints of that run; returns how many.
local rows = redis.call('ZRANGEBYLEX', KEYS[9], '[' .. ARGV[1] .. ':', '(' .. ARGV[1] .. ';')
local touched = {}
for _, row in ipairs(rows) do
  local member = string.sub(row, #ARGV[1] + 2)
  drop(member)
  touched[string.sub(member, 1, 32)] = true
end
for nsk in pairs(touched) do tidy(nsk) end
return #rows
"""
)

PRUNE = (
    _COMMON
    + r"""
-- ARGV: most checkpoints to delete in this call. Deletes all but the newest checkpoint of
-- each namespace; returns how many it deleted (the caller calls again while that is the
-- most), or -1 when the thread uses a DeltaChannel.
if redis.call('HEXISTS', KEYS[1], 'delta') == 1 then return -1 end
local budget, dropped = tonumber(ARGV[1]), 0
for _, nsk in ipairs(namespaces()) do
  local low = '[' .. nsk .. ':'
  local newest = redis.call('ZREVRANGEBYLEX', KEYS[3], '(' .. nsk .. ';', low, 'LIMIT', 0, 1)
  if #newest == 1 then
    local old = redis.call(
      'ZRANGEBYLEX', KEYS[3], low, '(' .. newest[1], 'LIMIT', 0, budget - dropped)
    for _, member in ipairs(old) do drop(member) end
    dropped = dropped + #old
    if dropped >= budget then return dropped end
  end
end
return dropped
"""
)

REPLACE = r"""
-- KEYS: checkpoint hash. ARGV: member, expected record, new record. Compare and set.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

SNAPSHOT = r"""
-- Returns the thread's namespaces, checkpoints, rf values, blobs and writes (HGETALL each).
return {
  redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[8])
}
"""

COPY_IN = r"""
-- ARGV: counts of namespace pairs, checkpoint triples, blob pairs and write pairs, then
-- those items. Adds what the thread lacks; returns how many checkpoints it added.
local n_ns, n_cp = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_bl, n_wr = tonumber(ARGV[3]), tonumber(ARGV[4])
local i, added = 5, 0
for _ = 1, n_ns do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_bl do
  redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_cp do
  local member, record, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', KEYS[2], member, record) == 1 then
    redis.call('ZADD', KEYS[3], 0, member)
    redis.call('HSET', KEYS[4], member, value)
    local nl = string.find(value, '\n', 1, true)
    local run = string.sub(value, 1, nl - 1)
    for field in string.gmatch(string.sub(value, nl + 1), '%S+') do
      redis.call('HINCRBY', KEYS[6], field, 1)
    end
    if run ~= '' then redis.call('ZADD', KEYS[9], 0, run .. ':' .. member) end
    added = added + 1
  end
  i = i + 3
end
for _ = 1, n_wr do
  if redis.call('HSETNX', KEYS[8], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[7], 0, ARGV[i])
  end
  i = i + 2
end
return added
"""
