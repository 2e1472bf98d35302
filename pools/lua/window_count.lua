-- window_count.lua: count one more in a fixed window (a rate limit's counter).
-- Not a pool script: it runs alone, without _common.lua.
-- KEYS[1] the counter
-- ARGV[1] the window in seconds: a counter without an expiry (the first count of a window,
--         or a key some older writer left) gets one, so no key outlives its window
-- Returns {count including this one, seconds left in the window}
local used = redis.call('INCR', KEYS[1])
local left = redis.call('TTL', KEYS[1])
if left < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {used, left}
