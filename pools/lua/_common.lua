-- _common.lua: helpers prepended to every pool script when it is registered (not a script
-- of its own). Every pool script gets the pool's eight state keys first, in this order.
local K_META, K_IDLE, K_BUSY, K_HOLDER, K_SESSION, K_RETIRING, K_STATS, K_EVENTS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

-- A whole number (ms, a count) as the text a command takes. redis.call writes a Lua number
-- with '%.17g', the costliest step of a renewal; '%d' writes the same digits for these.
-- So numbers go to commands as text: literals quoted ('1'), computed ones through int().
local function int(n)
  return string.format('%d', n)
end

-- holder values are "session|start_ms"
local function split_holder(value)
  if not value then return '', 0 end
  local sep = string.find(value, '|', 1, true)
  return string.sub(value, 1, sep - 1), string.sub(value, sep + 1)
end

-- End the lease on `number` at `at_ms`. The number goes back to idle, idle since `at_ms`,
-- unless it is being retired, in which case it leaves the pool now that nobody holds it.
local function end_lease(number, at_ms, reason)
  local session, start = split_holder(redis.call('HGET', K_HOLDER, number))
  redis.call('ZREM', K_BUSY, number)
  redis.call('HDEL', K_HOLDER, number)
  if session ~= '' and redis.call('HGET', K_SESSION, session) == number then
    redis.call('HDEL', K_SESSION, session)
  end
  redis.call('HINCRBY', K_STATS, reason, '1')
  redis.call('XADD', K_EVENTS, '*', 't', 'end', 'n', number, 's', session, 'st', start,
    'at', at_ms, 'r', reason)
  if redis.call('SREM', K_RETIRING, number) == 1 then
    redis.call('HINCRBY', K_STATS, 'retired', '1')
    redis.call('XADD', K_EVENTS, '*', 't', 'retired', 'n', number, 'at', at_ms)
  else
    redis.call('ZADD', K_IDLE, at_ms, number)
  end
end

-- Ad ids or consent learnt after the visit began (JSON; '' = none), for the recorder, which
-- sets them on the visit (a call keeps what the visit had when it was matched). Sent to one
-- pool of the session only, so that two updates keep their order. Called only while the
-- session holds a live lease: a session id alone (read off a page, or long expired) must not
-- change a visit's consent.
local function record_ad(session, at_ms, payload)
  if payload ~= '' then
    redis.call('XADD', K_EVENTS, '*', 't', 'ad', 's', session, 'at', at_ms, 'p', payload)
  end
end

-- Per-session renewal limit (fixed window; `key` is the session's counter, `limit` 0 = none):
-- true when this renewal is one too many. It is counted either way.
local function renewal_limited(key, now_ms, limit, window_ms)
  if limit <= 0 then return false end
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, window_ms) end
  return count > limit
end

-- The page-view fields of a lease or renew event for `url` ('' = none). Each session stores
-- at most `cap` page views; later ones are only counted ('pc', the views seen so far). The
-- counter (`key`) is kept `ttl_ms` after the session's last lease or renewal, with or without
-- a page: while it exists the session is active and may be resumed (see lease.lua).
local function page_fields(key, url, cap, ttl_ms)
  local ttl = int(ttl_ms)
  if url == '' then
    -- Most renewals (heartbeats) bring no page: one command keeps the session active; a
    -- counter lost meanwhile starts again at 0.
    if redis.call('PEXPIRE', key, ttl) == 0 then redis.call('SET', key, '0', 'PX', ttl) end
    return {}
  end
  local count = redis.call('INCR', key)
  redis.call('PEXPIRE', key, ttl)
  if count > cap then return {'pc', int(count)} end
  return {'u', url, 'pc', int(count)}
end

-- Leases whose expiry has passed end at their expiry, not at now: the number has been
-- free since then, and matching must not credit that session with later calls.
local function reclaim_expired(now_ms, limit)
  local expired = redis.call('ZRANGEBYSCORE', K_BUSY, '-inf', now_ms, 'WITHSCORES', 'LIMIT', '0', limit)
  for i = 1, #expired, 2 do
    end_lease(expired[i], expired[i + 1], 'expired')
  end
  return #expired / 2
end
