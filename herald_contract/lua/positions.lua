-- Herald positions: the epoch and top offset of each of the channels, read in one call (the
-- bus contract's positions, herald_contract/bus.py). Reads only: unlike lua/history.lua it
-- neither checks the writer nor starts an epoch.
--
-- KEYS[1..n] meta hashes (herald_contract.keys.KeyLayout); one Redis, not a cluster.
--
-- Returns {epoch_1, top_1, epoch_2, top_2, ...}; a channel with nothing published (no meta
-- hash) answers nil, nil.

local reply = {}
for i, key in ipairs(KEYS) do
  local meta = redis.call('HMGET', key, 'epoch', 'top')
  reply[2 * i - 1] = meta[1]
  reply[2 * i] = meta[2]
end
return reply
