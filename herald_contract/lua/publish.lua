-- Herald publish: take the channel's next offset, store the envelope in the history and
-- broadcast it, as one atomic step (the bus contract in herald_contract/bus.py).
--
-- KEYS[1] history stream    KEYS[2] meta hash            (herald_contract.keys.KeyLayout)
-- ARGV[1] live pub/sub channel
-- ARGV[2] data, already msgpack-packed by the caller (appended to the envelope as is)
-- ARGV[3] event id, "" for none
-- ARGV[4] candidate epoch, used only when the channel has none
-- ARGV[5] history_size   ARGV[6] history_ttl_ms   ARGV[7] meta_ttl_ms
-- ARGV[8] idempotency_ttl_ms   ARGV[9] event key prefix (the event id is appended)
-- ARGV[10] optional: "sharded" broadcasts with SPUBLISH (Redis Cluster, sharded pub/sub);
--          absent or anything else broadcasts with PUBLISH (one plain Redis: the same wire)
--
-- Returns {epoch, offset, duplicate (0 or 1)}.
--
-- The meta hash's `writer` names the Redis primary that last wrote the channel (this script,
-- or lua/history.lua creating the epoch): its replication id, which Redis 7 makes new when a
-- replica is promoted and at every start.
-- Replication is asynchronous, so a primary that is not the last writer may lack publications
-- the last writer acknowledged, and its `top` may be behind offsets clients already hold.
-- Such a primary starts a new epoch (offsets go on from its top), so no (epoch, offset) ever
-- names two different publications, and every reader positioned in the old epoch is told its
-- recovery failed rather than miss, unknowingly, what the last writer acknowledged
-- (docs/protocol.md, "After a Redis failover").
--
-- Numbers handed to redis.call are formatted with %d: Lua 5.1 numbers are doubles and
-- their default string form switches to exponents past 14 digits.

local history_key, meta_key = KEYS[1], KEYS[2]
local live, data, event_id, candidate = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local history_size = tonumber(ARGV[5])
local history_ttl_ms = tonumber(ARGV[6])
local meta_ttl_ms = tonumber(ARGV[7])
local idempotency_ttl_ms = tonumber(ARGV[8])
local event_key = ARGV[9] .. event_id
local broadcast = 'PUBLISH'
if ARGV[10] == 'sharded' then
  broadcast = 'SPUBLISH'
end

local function int(n)
  return string.format('%d', n)
end

local writer = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
local meta = redis.call('HMGET', meta_key, 'epoch', 'writer')
local epoch, last_writer = meta[1], meta[2]
-- A meta without a writer (kept from before writers were recorded) is adopted.
local same_writer = (not last_writer) or last_writer == writer

if event_id ~= '' then
  -- The event key holds '<offset> <epoch>' (before epochs were kept there: '<offset>').
  local seen = redis.call('GET', event_key)
  if seen then
    local seen_offset, seen_epoch = string.match(seen, '^(%d+) (.+)$')
    if seen_offset == nil then
      seen_offset, seen_epoch = seen, (same_writer and epoch) or nil
    end
    -- A repeat is a duplicate only in the epoch it was published in. When that epoch is
    -- gone (history lost, or another writer: its readers are told their recovery failed),
    -- publishing it again into the current one is the only way its subscribers get it.
    if epoch and seen_epoch == epoch and same_writer then
      return {epoch, tonumber(seen_offset), 1}
    end
  end
end

if not epoch then
  -- A new epoch starts a new history; a stream left from a lost meta would refuse the
  -- smaller entry ids.
  redis.call('DEL', history_key)
  epoch = candidate
  redis.call('HSET', meta_key, 'epoch', epoch, 'writer', writer)
elseif not same_writer then
  epoch = candidate
  redis.call('HSET', meta_key, 'epoch', epoch, 'writer', writer)
elseif not last_writer then
  redis.call('HSET', meta_key, 'writer', writer)
end
local offset = redis.call('HINCRBY', meta_key, 'top', 1)

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- [1, epoch, offset, published_ms, event_id, data]: 0x96 is a 6-element fixarray. cmsgpack
-- packs integral Lua numbers as msgpack ints of the smallest width, like Python's msgpack,
-- so herald_contract.envelope.build_envelope gives the same bytes (tests/publisher/test_publish.py).
local envelope = string.char(0x96) .. cmsgpack.pack(1) .. cmsgpack.pack(epoch)
  .. cmsgpack.pack(offset) .. cmsgpack.pack(now_ms) .. cmsgpack.pack(event_id) .. data

redis.call('XADD', history_key, 'MAXLEN', int(history_size), int(offset) .. '-0',
  't', int(now_ms), 'p', envelope)

-- Age trim: the oldest few entries only, so one publish does bounded work; every publish
-- trims up to 8 while adding one, so a backlog of expired entries drains quickly, and the
-- PEXPIRE below drops the whole stream once nothing is published for history_ttl_ms.
local cutoff_ms = now_ms - history_ttl_ms
local oldest = redis.call('XRANGE', history_key, '-', '+', 'COUNT', 8)
local keep_from = nil
for _, entry in ipairs(oldest) do
  local fields = entry[2]
  local published_ms = nil
  for i = 1, #fields, 2 do
    if fields[i] == 't' then
      published_ms = tonumber(fields[i + 1])
    end
  end
  if published_ms == nil or published_ms >= cutoff_ms then
    break
  end
  keep_from = tonumber(string.match(entry[1], '^(%d+)')) + 1
end
if keep_from ~= nil then
  redis.call('XTRIM', history_key, 'MINID', int(keep_from) .. '-0')
end

redis.call('PEXPIRE', history_key, int(history_ttl_ms))
redis.call('PEXPIRE', meta_key, int(meta_ttl_ms))
if event_id ~= '' then
  redis.call('SET', event_key, int(offset) .. ' ' .. epoch, 'PX', int(idempotency_ttl_ms))
end
redis.call(broadcast, live, envelope)
return {epoch, offset, 0}
