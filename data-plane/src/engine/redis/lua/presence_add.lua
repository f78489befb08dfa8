-- Adds or refreshes a presence entry and counts its user once per entry.
-- KEYS: as presence_expire.lua. ARGV: 1 client id, 2 protobuf ClientInfo, 3 expiry (unix s),
--       4 key TTL (s), 5 user
redis.call("hset", KEYS[1], ARGV[1], ARGV[2])
redis.call("zadd", KEYS[2], ARGV[3], ARGV[1])
local previous = redis.call("hget", KEYS[3], ARGV[1])
if previous ~= ARGV[5] then
  if previous then
    if redis.call("hincrby", KEYS[4], previous, -1) <= 0 then
      redis.call("hdel", KEYS[4], previous)
    end
  end
  redis.call("hset", KEYS[3], ARGV[1], ARGV[5])
  redis.call("hincrby", KEYS[4], ARGV[5], 1)
end
for i = 1, 4 do
  redis.call("expire", KEYS[i], ARGV[4])
end
