-- Reads the status of the users of one shard: {connections, last seen (unix ms)} per user, in
-- the order of KEYS[2..].
-- KEYS: 1 contributors zset, 2.. user status hashes. ARGV: 1 now (unix ms), 2 node TTL (ms), 3 record TTL (ms)
local now, node_ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 2, #KEYS do
  local connections = live_connections(KEYS[i], now, node_ttl, keep)
  out[#out + 1] = connections
  out[#out + 1] = tonumber(redis.call("hget", KEYS[i], "ls") or "0")
end
return out
