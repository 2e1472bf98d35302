-- lease.lua: give this session a number from the pool: the one it holds, else the number
-- idle longest, so a number released recently gets the longest possible cool-down.
-- KEYS[1..8] pool state (pools/keys.py)   KEYS[9] rate key of the IP   KEYS[10] rate key of the visitor
-- KEYS[11] rate key of the IP's subnet   KEYS[12] live sessions of the IP   KEYS[13] of the subnet
-- ARGV[1] session id   ARGV[2] now_ms   ARGV[3] new leases allowed per window (0 = no limit)
-- ARGV[4] window ms   ARGV[5] visit payload JSON recorded with a new lease ('' = none)
-- ARGV[6] page url to record as viewed ('' = none)
-- ARGV[7] new leases allowed per window from the subnet (0 = no limit)
-- ARGV[8] ARGV[9] share of the pool's numbers one IP, one subnet may hold at once (0 = no cap)
-- ARGV[10] ad ids / consent JSON to record for a resumed session ('' = none): recorded only
-- when the session already held a live lease, never with a new one (a session id alone must
-- not change a visit's consent)
-- KEYS[14] the session's renewals in this window   KEYS[15] the session's page views
-- ARGV[11] renewals allowed per session per window (0 = no limit)   ARGV[12] window ms
-- ARGV[13] page views stored per session (later ones are only counted)
-- ARGV[14] '1' when the client named the session (resuming it), else '0'
-- ARGV[15] how long after its last lease or renewal a session may be resumed (ms)
-- Returns {code, number, expires_ms, started_ms}: 0 leased now, 1 already held (renewed, or
-- past the session's renewal limit: expiry unchanged, nothing recorded), 2 exhausted,
-- 3 rate limited, 5 not resumed (idle too long, or unknown here: start a new session),
-- -1 pool not loaded.
local session, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local meta = redis.call('HMGET', K_META, 'lease_ms', 'max_age_ms', 'cooldown_ms', 'policy')
if not meta[1] then return {-1} end
local lease_ms, max_age_ms, cooldown_ms = tonumber(meta[1]), tonumber(meta[2]), tonumber(meta[3])
local function page(url)
  return unpack(page_fields(KEYS[15], url, tonumber(ARGV[13]), tonumber(ARGV[15]) + lease_ms))
end

reclaim_expired(now_s, '100')

local held = redis.call('HGET', K_SESSION, session)
if held then
  local _, start = split_holder(redis.call('HGET', K_HOLDER, held))
  local expiry = redis.call('ZSCORE', K_BUSY, held)
  if not expiry or tonumber(expiry) <= now then
    -- Lapsed (beyond what reclaim_expired took this time): it ended at its expiry.
    end_lease(held, expiry or now_s, 'expired')
  elseif now - tonumber(start) <= max_age_ms then
    if renewal_limited(KEYS[14], now, tonumber(ARGV[11]), ARGV[12]) then
      redis.call('HINCRBY', K_STATS, 'renewals_limited', '1')
      return {1, held, tonumber(expiry), tonumber(start)}
    end
    local expires = now + lease_ms
    local expires_s = int(expires)
    redis.call('ZADD', K_BUSY, 'XX', expires_s, held)
    redis.call('HINCRBY', K_STATS, 'renewals', '1')
    redis.call('XADD', K_EVENTS, '*', 't', 'renew', 'n', held, 's', session, 'st', start,
      'at', now_s, 'x', expires_s, page(ARGV[6]))
    record_ad(session, now_s, ARGV[10])
    return {1, held, expires, tonumber(start)}
  else
    -- A page load after the maximum age starts a fresh lease; only idle renewals are refused.
    end_lease(held, now_s, 'max_age')
  end
end

-- A session holding no live lease is resumed only while it is active: a session id alone
-- (read off a page, or leaked) must not revive a visit, nor its consent, long after.
if ARGV[14] == '1' and redis.call('EXISTS', KEYS[15]) == 0 then return {5} end

local limits = {[9] = tonumber(ARGV[3]), [10] = tonumber(ARGV[3]), [11] = tonumber(ARGV[7])}
for i = 9, 11 do
  if limits[i] > 0 then
    local count = redis.call('INCR', KEYS[i])
    if count == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
    if count > limits[i] then
      redis.call('HINCRBY', K_STATS, 'rate_limited', '1')
      return {3}
    end
  end
end

-- Concurrent leases per IP and per subnet: each may hold at most its share of the pool
-- (never less than 2 numbers), however many visitor ids or user agents it rotates through.
local size  -- the pool's numbers, counted only when a share applies
local live_keys = {}
for i = 12, 13 do
  local share = tonumber(ARGV[i - 4])
  if share > 0 then
    size = size or redis.call('ZCARD', K_IDLE) + redis.call('ZCARD', K_BUSY)
    local cap = math.max(2, math.floor(size * share))
    if redis.call('SCARD', KEYS[i]) >= cap then
      -- Full: forget the sessions whose lease has ended since, then count again.
      for _, member in ipairs(redis.call('SMEMBERS', KEYS[i])) do
        if redis.call('HEXISTS', K_SESSION, member) == 0 then redis.call('SREM', KEYS[i], member) end
      end
      if redis.call('SCARD', KEYS[i]) >= cap then
        redis.call('HINCRBY', K_STATS, 'rate_limited', '1')
        return {3}
      end
    end
    live_keys[#live_keys + 1] = KEYS[i]
  end
end

local pick = redis.call('ZRANGE', K_IDLE, '0', '0', 'WITHSCORES')
if #pick == 0 or (meta[4] ~= 'reuse_cooling' and now - tonumber(pick[2]) < cooldown_ms) then
  redis.call('HINCRBY', K_STATS, 'exhausted', '1')
  redis.call('XADD', K_EVENTS, '*', 't', 'exhausted', 's', session, 'at', now_s, 'p', ARGV[5])
  return {2}
end

local number = pick[1]
local expires = now + lease_ms
local expires_s = int(expires)
redis.call('ZREM', K_IDLE, number)
redis.call('ZADD', K_BUSY, expires_s, number)
redis.call('HSET', K_HOLDER, number, session .. '|' .. now_s)
redis.call('HSET', K_SESSION, session, number)
redis.call('HINCRBY', K_STATS, 'leases', '1')
for _, key in ipairs(live_keys) do
  redis.call('SADD', key, session)
  redis.call('PEXPIRE', key, int(max_age_ms + lease_ms))  -- no lease outlives this
end
local busy = redis.call('ZCARD', K_BUSY)
if busy > tonumber(redis.call('HGET', K_STATS, 'peak_busy') or '0') then
  redis.call('HSET', K_STATS, 'peak_busy', int(busy))
end
redis.call('XADD', K_EVENTS, '*', 't', 'lease', 'n', number, 's', session, 'st', now_s,
  'at', now_s, 'x', expires_s, 'p', ARGV[5], page(ARGV[6]))
return {0, number, expires, now}
