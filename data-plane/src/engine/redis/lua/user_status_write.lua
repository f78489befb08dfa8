-- Sets one contributor's connection counts of the users of one shard. A count of 0 removes the
-- contributor's field, and a user left with no live connection anywhere is last seen now.
-- Every written hash keeps its record for the last-seen TTL.
-- KEYS: 1 contributors zset, 2.. user status hashes.
-- ARGV: 1 contributor, 2 now (unix ms), 3 node TTL (ms), 4 record TTL (ms), 5.. counts in the
--       order of KEYS[2..]
local field = "n:" .. ARGV[1]
local now, node_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 2, #KEYS do
  local count = tonumber(ARGV[3 + i])
  if count > 0 then
    redis.call("hset", KEYS[i], field, count)
  elseif redis.call("hdel", KEYS[i], field) == 1 then
    if live_connections(KEYS[i], now, node_ttl, tonumber(ARGV[4])) == 0 then
      redis.call("hset", KEYS[i], "ls", now)
    end
  end
  redis.call("pexpire", KEYS[i], ARGV[4])
end
