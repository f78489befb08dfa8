-- A contributor's heartbeat on one shard; drops contributors silent for longer than the
-- retention. Returns 1 when the contributor was unknown or its previous beat too old (its
-- counts may have been dropped by readers: the caller writes them all again), else 0.
-- KEYS: 1 contributors zset. ARGV: 1 contributor, 2 now (unix ms), 3 node TTL (ms),
--       4 retention (ms)
local now = tonumber(ARGV[2])
local previous = redis.call("zscore", KEYS[1], ARGV[1])
redis.call("zadd", KEYS[1], now, ARGV[1])
redis.call("zremrangebyscore", KEYS[1], "-inf", now - tonumber(ARGV[4]))
redis.call("pexpire", KEYS[1], ARGV[4])
if previous and now - tonumber(previous) <= tonumber(ARGV[3]) then
  return 0
end
return 1
