-- renew.lua: extend the lease this session holds; never hands out a new number.
-- KEYS[1..8] pool state (pools/keys.py)   KEYS[9] the session's renewals in this window
-- KEYS[10] the session's page views
-- ARGV[1] session id   ARGV[2] now_ms   ARGV[3] site key   ARGV[4] page url to record ('' = none)
-- ARGV[5] ad ids / consent JSON to record ('' = none)
-- ARGV[6] renewals allowed per session per window (0 = no limit)   ARGV[7] window ms
-- ARGV[8] page views stored per session (later ones are only counted)
-- ARGV[9] how long after its last lease or renewal a session may be resumed (ms)
-- Returns {code, number, expires_ms, started_ms, target, fallback}: 0 renewed (or, past the
-- session's renewal limit, still held with its expiry unchanged and nothing recorded),
-- 1 not held (released or lapsed), 4 past the maximum lease age (lease ended now),
-- -1 pool not loaded, -2 pool belongs to another site.
-- Ad ids and the page view are recorded only with a renewal of a live lease.
local session, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local meta = redis.call('HMGET', K_META, 'site', 'lease_ms', 'max_age_ms', 'target', 'fallback')
if not meta[1] then return {-1} end
if meta[1] ~= ARGV[3] then return {-2} end
local target, fallback = meta[4], meta[5]

local number = redis.call('HGET', K_SESSION, session)
if not number then return {1, '', 0, 0, target, fallback} end
local expiry = redis.call('ZSCORE', K_BUSY, number)
local _, start = split_holder(redis.call('HGET', K_HOLDER, number))
if not expiry or tonumber(expiry) <= now then
  -- Lapsed before this renewal arrived: it ended at its expiry.
  end_lease(number, expiry or now_s, 'expired')
  return {1, '', 0, 0, target, fallback}
end
if now - tonumber(start) > tonumber(meta[3]) then
  end_lease(number, now_s, 'max_age')
  return {4, '', 0, 0, target, fallback}
end
if renewal_limited(KEYS[9], now, tonumber(ARGV[6]), ARGV[7]) then
  -- Too many renewals from this session: it keeps its number until the lease's expiry.
  redis.call('HINCRBY', K_STATS, 'renewals_limited', '1')
  return {0, number, tonumber(expiry), tonumber(start), target, fallback}
end
local expires = now + tonumber(meta[2])
local expires_s = int(expires)
redis.call('ZADD', K_BUSY, 'XX', expires_s, number)
redis.call('HINCRBY', K_STATS, 'renewals', '1')
redis.call('XADD', K_EVENTS, '*', 't', 'renew', 'n', number, 's', session, 'st', start,
  'at', now_s, 'x', expires_s,
  unpack(page_fields(KEYS[10], ARGV[4], tonumber(ARGV[8]), tonumber(ARGV[9]) + tonumber(meta[2]))))
record_ad(session, now_s, ARGV[5])
return {0, number, expires, tonumber(start), target, fallback}
