-- Shared start of the user status scripts (prepended to each): a user's live connection count,
-- dropping the counts of contributors (processes) whose heartbeat is older than the node TTL.
-- When that leaves the user with no live connection, the latest heartbeat of a dropped
-- contributor becomes the user's last-seen time (the last moment it was known online).
-- KEYS: 1 contributors of this shard (zset: contributor -> last heartbeat, unix ms)
local function live_connections(key, now, node_ttl, keep)
  local fields = redis.call("hgetall", key)
  local total = 0
  local dead_beat = 0
  for i = 1, #fields, 2 do
    local field = fields[i]
    if string.sub(field, 1, 2) == "n:" then
      local beat = redis.call("zscore", KEYS[1], string.sub(field, 3))
      if beat and now - tonumber(beat) <= node_ttl then
        total = total + tonumber(fields[i + 1])
      else
        redis.call("hdel", key, field)
        if beat and tonumber(beat) > dead_beat then
          dead_beat = tonumber(beat)
        end
      end
    end
  end
  if total == 0 and dead_beat > 0 then
    local seen = tonumber(redis.call("hget", key, "ls") or "0")
    if dead_beat > seen then
      redis.call("hset", key, "ls", dead_beat)
      local left = dead_beat + keep - now
      if left > 0 then
        redis.call("pexpire", key, left)
      else
        redis.call("del", key)
      end
    end
  end
  return total
end
