-- Herald history: the channel's position and the publications after a given one, read in
-- one atomic step (the bus contract in herald_contract/bus.py).
--
-- KEYS[1] history stream    KEYS[2] meta hash            (herald_contract.keys.KeyLayout)
-- ARGV[1] candidate epoch, used only when the channel has none
-- ARGV[2] meta_ttl_ms, applied when this call creates the epoch
-- ARGV[3] since epoch, "" to read the position only
-- ARGV[4] since offset   ARGV[5] limit (at most this many publications)
--
-- Returns {epoch, top, offset_1, envelope_1, offset_2, envelope_2, ...}: publications with
-- offsets above the since offset, in order, only when the since epoch is the current one.

local history_key, meta_key = KEYS[1], KEYS[2]
local candidate, meta_ttl_ms = ARGV[1], tonumber(ARGV[2])
local since_epoch, since_offset, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])

-- The writer: this primary's replication id (lua/publish.lua says why it is kept).
local writer = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')

-- Creating the epoch here lets a subscriber that has seen nothing yet recover later: the
-- first publication keeps this epoch instead of inventing its own.
if redis.call('HSETNX', meta_key, 'epoch', candidate) == 1 then
  redis.call('HSET', meta_key, 'top', 0, 'writer', writer)
  redis.call('PEXPIRE', meta_key, string.format('%d', meta_ttl_ms))
  redis.call('DEL', history_key)
else
  local last_writer = redis.call('HGET', meta_key, 'writer')
  if not last_writer then
    redis.call('HSET', meta_key, 'writer', writer)  -- kept from before writers were recorded
  elseif last_writer ~= writer then
    -- Another primary wrote this channel last and may have acknowledged publications this
    -- one lacks: start a new epoch, as the publish script would (offsets go on).
    redis.call('HSET', meta_key, 'epoch', candidate, 'writer', writer)
  end
end
local meta = redis.call('HMGET', meta_key, 'epoch', 'top')
local epoch, top = meta[1], tonumber(meta[2]) or 0

local reply = {epoch, top}
if since_epoch == epoch and since_offset < top and limit > 0 then
  local start = '(' .. string.format('%d', since_offset) .. '-0'
  local entries = redis.call('XRANGE', history_key, start, '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'p' then
        reply[#reply + 1] = tonumber(string.match(entry[1], '^(%d+)'))
        reply[#reply + 1] = fields[i + 1]
      end
    end
  end
end
return reply
