-- sync.lua: make the pool's Redis state match its SQL configuration. On an empty Redis
-- (after a restart or flush) it also restores the leases SQL knows to be live.
-- KEYS[1..8] pool state (pools/keys.py)
-- ARGV[1] JSON {"mode": "update" | "load",
--               "meta": {site, target, fallback, lease_ms, max_age_ms, cooldown_ms, policy},
--               "active": [numbers], "idle_since": {number: ms},
--               "leases": [[number, session, start_ms, expires_ms], ...]}
-- "update" changes nothing and returns {-1} when the pool is not loaded: an empty Redis
-- must be loaded with the lease history, or live leases would be handed out again.
-- Returns {was_loaded, numbers added, leases restored, numbers removed, numbers set retiring,
--          removed numbers...}
local spec = cjson.decode(ARGV[1])
local was_loaded = redis.call('EXISTS', K_META)
if was_loaded == 0 and spec.mode ~= 'load' then return {-1} end
local m = spec.meta
redis.call('HSET', K_META, 'site', m.site, 'target', m.target, 'fallback', m.fallback,
  'lease_ms', m.lease_ms, 'max_age_ms', m.max_age_ms, 'cooldown_ms', m.cooldown_ms,
  'policy', m.policy)

local active = {}
for _, number in ipairs(spec.active) do active[number] = true end

local restored = 0
if was_loaded == 0 then
  for _, lease in ipairs(spec.leases) do
    local number, session = lease[1], lease[2]
    if active[number] and not redis.call('ZSCORE', K_BUSY, number) then
      redis.call('ZADD', K_BUSY, lease[4], number)
      redis.call('HSET', K_HOLDER, number, session .. '|' .. lease[3])
      redis.call('HSET', K_SESSION, session, number)
      restored = restored + 1
    end
  end
end

-- Numbers no longer active: an idle one leaves now, a leased one when its lease ends.
local removed, retiring = {}, 0
for _, number in ipairs(redis.call('ZRANGE', K_IDLE, 0, -1)) do
  if not active[number] then
    redis.call('ZREM', K_IDLE, number)
    table.insert(removed, number)
  end
end
for _, number in ipairs(redis.call('ZRANGE', K_BUSY, 0, -1)) do
  if not active[number] and redis.call('SADD', K_RETIRING, number) == 1 then
    retiring = retiring + 1
  end
end

local added = 0
for _, number in ipairs(spec.active) do
  redis.call('SREM', K_RETIRING, number)
  if not redis.call('ZSCORE', K_BUSY, number) and not redis.call('ZSCORE', K_IDLE, number) then
    redis.call('ZADD', K_IDLE, spec.idle_since[number] or 0, number)
    added = added + 1
  end
end

redis.pcall('XGROUP', 'CREATE', K_EVENTS, 'recorders', '0', 'MKSTREAM')
local reply = {was_loaded, added, restored, #removed, retiring}
for _, number in ipairs(removed) do table.insert(reply, number) end
return reply
