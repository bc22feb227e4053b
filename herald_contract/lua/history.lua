-- Herald history: the channel's position and the publications after a given one, read in
-- one atomic step (the bus contract in herald_contract/bus.py).
--
-- KEYS[1] history stream    KEYS[2] meta hash            (herald_contract.keys.KeyLayout)
-- ARGV[1] candidate epoch, used only when another Redis process wrote the channel last
-- ARGV[2] the epoch of a channel with nothing published yet ("-", herald_contract.history.NO_EPOCH)
-- ARGV[3] since epoch, "" to read the position only
-- ARGV[4] since offset   ARGV[5] limit (at most this many publications)
--
-- Returns {epoch, top, offset_1, envelope_1, offset_2, envelope_2, ...}: publications with
-- offsets above the since offset, in order, only when the since epoch is the current one.
-- A since of {ARGV[2], 0} (a reader that saw nothing) reads from offset 0 of the current epoch.
--
-- A channel without a meta hash has nothing published: the reply is {ARGV[2], 0} and the
-- script writes nothing, so reading (every subscribe does) leaves no key behind; the first
-- publication creates the epoch (lua/publish.lua).

local history_key, meta_key = KEYS[1], KEYS[2]
local candidate, no_epoch = ARGV[1], ARGV[2]
local since_epoch, since_offset, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])

local meta = redis.call('HMGET', meta_key, 'epoch', 'top', 'writer')
local epoch, top, last_writer = meta[1], tonumber(meta[2]) or 0, meta[3]
if not epoch then
  return {no_epoch, 0}
end

-- The writer: this primary's replication id (lua/publish.lua says why it is kept).
local writer = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
if not last_writer then
  redis.call('HSET', meta_key, 'writer', writer)  -- kept from before writers were recorded
elseif last_writer ~= writer then
  -- Another primary wrote this channel last and may have acknowledged publications this
  -- one lacks: start a new epoch, as the publish script would (offsets go on).
  epoch = candidate
  redis.call('HSET', meta_key, 'epoch', epoch, 'writer', writer)
end

if since_epoch == no_epoch and since_offset == 0 then
  since_epoch = epoch
end

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
