-- caller_calls.lua: record a call of one caller and answer its recent history, for the
-- repeat_burst and cross_publisher signals (attribution.fraud.screen).
-- KEYS[1] the caller's calls (sorted set: "<publisher>|<call id>" -> ms)
-- ARGV[1] now_ms   ARGV[2] this call's member   ARGV[3] burst window (ms)
-- ARGV[4] history kept (ms; also the cross-publisher window)
-- Returns {calls within the burst window (this one included), publisher|call members kept}.
-- A redelivered webhook adds nothing: the member is the same.
local now = tonumber(ARGV[1])
local kept = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - kept)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == false then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], kept)
local burst = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[3]), '+inf')
local members = redis.call('ZRANGEBYSCORE', KEYS[1], now - kept, '+inf')
return {burst, members}
