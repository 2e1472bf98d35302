-- lease.lua: give this session a number from the pool: the one it holds, else the number
-- idle longest, so a number released recently gets the longest possible cool-down.
-- KEYS[1..8] pool state (pools/keys.py)   KEYS[9] rate key of the IP   KEYS[10] rate key of the visitor
-- ARGV[1] session id   ARGV[2] now_ms   ARGV[3] new leases allowed per window (0 = no limit)
-- ARGV[4] window ms   ARGV[5] visit payload JSON recorded with a new lease ('' = none)
-- ARGV[6] page url to record as viewed ('' = none)
-- Returns {code, number, expires_ms, started_ms}: 0 leased now, 1 already held (renewed),
-- 2 exhausted, 3 rate limited, -1 pool not loaded.
local session, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local meta = redis.call('HMGET', K_META, 'lease_ms', 'max_age_ms', 'cooldown_ms', 'policy')
if not meta[1] then return {-1} end
local lease_ms, max_age_ms, cooldown_ms = tonumber(meta[1]), tonumber(meta[2]), tonumber(meta[3])

reclaim_expired(now, 100)

local held = redis.call('HGET', K_SESSION, session)
if held then
  local _, start = split_holder(redis.call('HGET', K_HOLDER, held))
  if now - tonumber(start) <= max_age_ms then
    local expires = now + lease_ms
    redis.call('ZADD', K_BUSY, 'XX', expires, held)
    redis.call('HINCRBY', K_STATS, 'renewals', 1)
    redis.call('XADD', K_EVENTS, '*', 't', 'renew', 'n', held, 's', session, 'st', start,
      'at', now_s, 'x', expires, 'u', ARGV[6])
    return {1, held, expires, tonumber(start)}
  end
  -- A page load after the maximum age starts a fresh lease; only idle renewals are refused.
  end_lease(held, now_s, 'max_age')
end

local limit = tonumber(ARGV[3])
if limit > 0 then
  for i = 9, 10 do
    local count = redis.call('INCR', KEYS[i])
    if count == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
    if count > limit then
      redis.call('HINCRBY', K_STATS, 'rate_limited', 1)
      return {3}
    end
  end
end

local pick = redis.call('ZRANGE', K_IDLE, 0, 0, 'WITHSCORES')
if #pick == 0 or (meta[4] ~= 'reuse_cooling' and now - tonumber(pick[2]) < cooldown_ms) then
  redis.call('HINCRBY', K_STATS, 'exhausted', 1)
  redis.call('XADD', K_EVENTS, '*', 't', 'exhausted', 's', session, 'at', now_s, 'p', ARGV[5])
  return {2}
end

local number = pick[1]
local expires = now + lease_ms
redis.call('ZREM', K_IDLE, number)
redis.call('ZADD', K_BUSY, expires, number)
redis.call('HSET', K_HOLDER, number, session .. '|' .. now_s)
redis.call('HSET', K_SESSION, session, number)
redis.call('HINCRBY', K_STATS, 'leases', 1)
local busy = redis.call('ZCARD', K_BUSY)
if busy > tonumber(redis.call('HGET', K_STATS, 'peak_busy') or '0') then
  redis.call('HSET', K_STATS, 'peak_busy', busy)
end
redis.call('XADD', K_EVENTS, '*', 't', 'lease', 'n', number, 's', session, 'st', now_s,
  'at', now_s, 'x', expires, 'p', ARGV[5], 'u', ARGV[6])
return {0, number, expires, now}
