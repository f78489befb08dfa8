-- Reads a channel's presence, dropping entries whose connection stopped refreshing them.
-- KEYS: as presence_expire.lua. ARGV: 1 now (unix s)
expire_presence(ARGV[1])
return redis.call("hgetall", KEYS[1])
