-- Removes a presence entry and its user's count.
-- KEYS: as presence_expire.lua. ARGV: 1 client id
redis.call("hdel", KEYS[1], ARGV[1])
redis.call("zrem", KEYS[2], ARGV[1])
local user = redis.call("hget", KEYS[3], ARGV[1])
if user then
  redis.call("hdel", KEYS[3], ARGV[1])
  if redis.call("hincrby", KEYS[4], user, -1) <= 0 then
    redis.call("hdel", KEYS[4], user)
  end
end
