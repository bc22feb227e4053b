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

if event_id ~= '' then
  local seen = redis.call('GET', event_key)
  local epoch = redis.call('HGET', meta_key, 'epoch')
  -- Without an epoch the history the event went into is gone: publishing it again into
  -- the new epoch is the only way its subscribers can still get it.
  if seen and epoch then
    return {epoch, tonumber(seen), 1}
  end
end

if redis.call('HSETNX', meta_key, 'epoch', candidate) == 1 then
  -- A new epoch starts a new history; a stream left from a lost meta would refuse the
  -- smaller entry ids.
  redis.call('DEL', history_key)
end
local epoch = redis.call('HGET', meta_key, 'epoch')
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
  redis.call('SET', event_key, int(offset), 'PX', int(idempotency_ttl_ms))
end
redis.call(broadcast, live, envelope)
return {epoch, offset, 0}
