-- Atomic publish into a channel with history: idempotency check, stream meta (epoch, top
-- offset), append with MAXLEN, retention, and PUBLISH of the publication with its position.
-- KEYS: 1 stream, 2 meta, 3 idempotency result
-- ARGV: 1 protobuf Publication, 2 history size, 3 history TTL (s), 4 meta TTL (s),
--       5 epoch to use if the stream is new, 6 PUB/SUB topic, 7 "1" to use idempotency,
--       8 idempotency TTL (s), 9 publication version ("0" = unversioned), 10 version epoch,
--       11 "1" to send the previous publication along for delta subscribers, 12 the publish
--       command: "PUBLISH", or "SPUBLISH" on a Redis Cluster (the topic is in the keys' slot)
-- A versioned publication not newer than the last accepted one (same version epoch, or any when
-- its own is empty) is dropped: nothing is stored or published and the current top is returned.
-- The version lives in the meta hash (fields v, ve), so it expires with the stream's meta.
-- With delta the PUB/SUB message is `d<offset>:<epoch>:<length of prev>:<prev><publication>`,
-- prev being the stream's previous entry (offset - 1) if it is still there, else empty; every
-- node then computes the same delta from the same pair.
if ARGV[7] == "1" then
  local previous = redis.call("get", KEYS[3])
  if previous then
    local sep = string.find(previous, ":", 1, true)
    return {string.sub(previous, 1, sep - 1), string.sub(previous, sep + 1)}
  end
end
local epoch = redis.call("hget", KEYS[2], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("hset", KEYS[2], "e", epoch)
end
if ARGV[9] ~= "0" then
  local last = redis.call("hmget", KEYS[2], "v", "ve", "s")
  if last[1] and (ARGV[10] == "" or ARGV[10] == last[2])
      and tonumber(ARGV[9]) <= tonumber(last[1]) then
    return {tostring(last[3] or 0), epoch}
  end
  redis.call("hset", KEYS[2], "v", ARGV[9], "ve", ARGV[10])
end
local top = redis.call("hincrby", KEYS[2], "s", 1)
if top == 1 then
  redis.call("del", KEYS[1])
end
local prev = ""
if ARGV[11] == "1" and top > 1 then
  local last = redis.call("xrevrange", KEYS[1], "+", "-", "COUNT", 1)
  if #last > 0 and last[1][1] == (top - 1) .. "-1" then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == "d" then
        prev = fields[i + 1]
      end
    end
  end
end
redis.call("xadd", KEYS[1], "MAXLEN", ARGV[2], top .. "-1", "d", ARGV[1])
redis.call("expire", KEYS[1], ARGV[3])
redis.call("expire", KEYS[2], ARGV[4])
if ARGV[11] == "1" then
  redis.call(ARGV[12], ARGV[6], "d" .. top .. ":" .. epoch .. ":" .. #prev .. ":" .. prev .. ARGV[1])
else
  redis.call(ARGV[12], ARGV[6], "p" .. top .. ":" .. epoch .. ":" .. ARGV[1])
end
if ARGV[7] == "1" then
  redis.call("set", KEYS[3], top .. ":" .. epoch, "EX", ARGV[8])
end
return {tostring(top), epoch}
