-- Marks (ARGV[1] = '+') or unmarks ('-') one holder of a channel's occupancy or of a user's
-- membership in it, in the channel's webhook hash KEYS[1], and records it in the holding
-- process's index KEYS[2] as ARGV[5] (so a survivor can release what a dead process held):
--   'h:' .. ARGV[2]  one field per holder (a process, or a process and a user)
--   ARGV[3]          how many holders there are ('c' for the channel, 'u:<user>' for a member)
--   'v'              the channel's last version
-- Marking twice or unmarking what is not marked changes nothing. Returns the new version
-- when the count went from 0 to 1 or from 1 to 0, else 0. A hash holding nothing but its
-- version expires after ARGV[4] ms.
local key = KEYS[1]
local function next_version()
  local now = redis.call('TIME')
  local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local v = tonumber(redis.call('HGET', key, 'v') or '0')
  if t <= v then t = v + 1 end
  redis.call('HSET', key, 'v', string.format('%.0f', t))
  return t
end
local changed = 0
if ARGV[1] == '+' then
  if redis.call('HSETNX', key, 'h:' .. ARGV[2], 1) == 1 then
    redis.call('SADD', KEYS[2], ARGV[5])
    if redis.call('HINCRBY', key, ARGV[3], 1) == 1 then
      changed = next_version()
    end
  end
else
  redis.call('SREM', KEYS[2], ARGV[5])
  if redis.call('HDEL', key, 'h:' .. ARGV[2]) == 1 then
    if redis.call('HINCRBY', key, ARGV[3], -1) <= 0 then
      redis.call('HDEL', key, ARGV[3])
      changed = next_version()
    end
  end
end
if redis.call('HLEN', key) <= 1 then
  redis.call('PEXPIRE', key, ARGV[4])
else
  redis.call('PERSIST', key)
end
return changed
