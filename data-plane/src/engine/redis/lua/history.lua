-- Reads a channel's stream position and, optionally, a page of publications.
-- KEYS: 1 stream, 2 meta
-- ARGV: 1 epoch to use if the stream is new, 2 meta TTL (s, 0 = keep), 3 "1" to read
--       publications, 4 exclusive bound offset ("" = none), 5 COUNT (-1 = all), 6 "1" reverse,
--       7 TTL (s) of the meta of a stream never published to
-- A read keeps the epoch of a new stream for the first publication, but a stream never
-- published to is only read: its meta lives ARGV[7] past the read (never longer than ARGV[2]),
-- so reads of ever new names cannot fill Redis; the first publication gives it the full TTL.
local epoch = redis.call("hget", KEYS[2], "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("hset", KEYS[2], "e", epoch)
end
local top = redis.call("hget", KEYS[2], "s")
if top then
  if tonumber(ARGV[2]) > 0 then
    redis.call("expire", KEYS[2], ARGV[2])
  end
else
  top = "0"
  local ttl = tonumber(ARGV[7])
  if tonumber(ARGV[2]) > 0 and tonumber(ARGV[2]) < ttl then ttl = tonumber(ARGV[2]) end
  local left = redis.call("ttl", KEYS[2])
  if left < ttl then
    redis.call("expire", KEYS[2], ttl)
  end
end
if ARGV[3] ~= "1" then
  return {top, epoch, {}}
end
local entries
if ARGV[6] == "1" then
  local upper = "+"
  if ARGV[4] ~= "" then upper = "(" .. ARGV[4] .. "-1" end
  if ARGV[5] == "-1" then
    entries = redis.call("xrevrange", KEYS[1], upper, "-")
  else
    entries = redis.call("xrevrange", KEYS[1], upper, "-", "COUNT", ARGV[5])
  end
else
  local lower = "-"
  if ARGV[4] ~= "" then lower = "(" .. ARGV[4] .. "-1" end
  if ARGV[5] == "-1" then
    entries = redis.call("xrange", KEYS[1], lower, "+")
  else
    entries = redis.call("xrange", KEYS[1], lower, "+", "COUNT", ARGV[5])
  end
end
return {top, epoch, entries}
