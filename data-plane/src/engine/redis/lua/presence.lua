-- Reads a channel's presence, dropping entries whose connection stopped refreshing them.
-- KEYS: 1 presence hash (client id -> protobuf ClientInfo), 2 expiry zset (client id -> unix s)
-- ARGV: 1 now (unix s)
local expired = redis.call("zrangebyscore", KEYS[2], "-inf", ARGV[1])
if #expired > 0 then
  redis.call("hdel", KEYS[1], unpack(expired))
  redis.call("zremrangebyscore", KEYS[2], "-inf", ARGV[1])
end
return redis.call("hgetall", KEYS[1])
