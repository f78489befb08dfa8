-- A channel's number of clients and of distinct users, in O(1) (plus the expired entries it
-- drops): the user counts are kept by presence_add.lua and presence_remove.lua.
-- KEYS: as presence_expire.lua. ARGV: 1 now (unix s)
expire_presence(ARGV[1])
return {redis.call("hlen", KEYS[1]), redis.call("hlen", KEYS[4])}
