-- Shared start of the presence scripts (prepended to each): drops the entries whose connection
-- stopped refreshing them, with their user counts.
-- KEYS: 1 presence hash (client id -> protobuf ClientInfo), 2 expiry zset (client id -> unix s),
--       3 client id -> user, 4 user -> number of its entries
local function expire_presence(now)
  local expired = redis.call("zrangebyscore", KEYS[2], "-inf", now)
  for _, client in ipairs(expired) do
    redis.call("hdel", KEYS[1], client)
    local user = redis.call("hget", KEYS[3], client)
    if user then
      redis.call("hdel", KEYS[3], client)
      if redis.call("hincrby", KEYS[4], user, -1) <= 0 then
        redis.call("hdel", KEYS[4], user)
      end
    end
  end
  if #expired > 0 then
    redis.call("zremrangebyscore", KEYS[2], "-inf", now)
  end
end
