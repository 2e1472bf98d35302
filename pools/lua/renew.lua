-- renew.lua: extend the lease this session holds; never hands out a new number.
-- KEYS[1..8] pool state (pools/keys.py)
-- ARGV[1] session id   ARGV[2] now_ms   ARGV[3] site key   ARGV[4] page url to record ('' = none)
-- ARGV[5] ad ids / consent JSON to record ('' = none)
-- Returns {code, number, expires_ms, started_ms, target, fallback}: 0 renewed,
-- 1 not held (released or lapsed), 4 past the maximum lease age (lease ended now),
-- -1 pool not loaded, -2 pool belongs to another site.
local session, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local meta = redis.call('HMGET', K_META, 'site', 'lease_ms', 'max_age_ms', 'target', 'fallback')
if not meta[1] then return {-1} end
if meta[1] ~= ARGV[3] then return {-2} end
local target, fallback = meta[4], meta[5]
-- Every answer from here on records the ad ids, whether or not the lease is still held.
local function done(reply)
  record_ad(session, now_s, ARGV[5])
  return reply
end

local number = redis.call('HGET', K_SESSION, session)
if not number then return done({1, '', 0, 0, target, fallback}) end
local expiry = redis.call('ZSCORE', K_BUSY, number)
local _, start = split_holder(redis.call('HGET', K_HOLDER, number))
if not expiry or tonumber(expiry) <= now then
  -- Lapsed before this renewal arrived: it ended at its expiry.
  end_lease(number, expiry or now_s, 'expired')
  return done({1, '', 0, 0, target, fallback})
end
if now - tonumber(start) > tonumber(meta[3]) then
  end_lease(number, now_s, 'max_age')
  return done({4, '', 0, 0, target, fallback})
end
local expires = now + tonumber(meta[2])
redis.call('ZADD', K_BUSY, 'XX', expires, number)
redis.call('HINCRBY', K_STATS, 'renewals', 1)
redis.call('XADD', K_EVENTS, '*', 't', 'renew', 'n', number, 's', session, 'st', start,
  'at', now_s, 'x', expires, 'u', ARGV[4])
return done({0, number, expires, tonumber(start), target, fallback})
