-- sync.lua: bring the pool's Redis state in line with SQL, touching only what changed.
-- KEYS[1..8] pool state (pools/keys.py)
-- ARGV[1] JSON {"mode": "load" | "meta" | "add" | "retire",
--               "meta": {site, target, fallback, lease_ms, max_age_ms, cooldown_ms, policy},
--               "active": [numbers]        (load: every active number; add: the new ones),
--               "retired": [numbers]       (retire: the numbers leaving the pool),
--               "idle_since": {number: ms}, "leases": [[number, session, start_ms, expires_ms]]}
-- "load" fills an empty Redis (after a restart or flush) from SQL, restoring the leases SQL
-- knows to be live; every other mode changes nothing and returns {-1} when the pool is not
-- loaded, since an empty pool must be loaded with its lease history first. Only "load" walks
-- the whole pool: the others cost what they change, so a large pool never blocks Redis.
-- Returns {was_loaded, numbers added, leases restored, numbers removed, numbers set
-- retiring, removed numbers...}
local spec = cjson.decode(ARGV[1])
local was_loaded = redis.call('EXISTS', K_META)
if was_loaded == 0 and spec.mode ~= 'load' then return {-1} end
local m = spec.meta
redis.call('HSET', K_META, 'site', m.site, 'target', m.target, 'fallback', m.fallback,
  'lease_ms', m.lease_ms, 'max_age_ms', m.max_age_ms, 'cooldown_ms', m.cooldown_ms,
  'policy', m.policy)

local function add(numbers, idle_since)
  local added = 0
  for _, number in ipairs(numbers) do
    redis.call('SREM', K_RETIRING, number)
    if not redis.call('ZSCORE', K_BUSY, number) and not redis.call('ZSCORE', K_IDLE, number) then
      redis.call('ZADD', K_IDLE, idle_since[number] or 0, number)
      added = added + 1
    end
  end
  return added
end

-- A number leaving the pool: an idle one goes now, a leased one when its lease ends.
local removed, retiring = {}, 0
local function retire(number)
  if redis.call('ZSCORE', K_BUSY, number) then
    retiring = retiring + redis.call('SADD', K_RETIRING, number)
  elseif redis.call('ZREM', K_IDLE, number) == 1 then
    table.insert(removed, number)
  end
end

local added, restored = 0, 0
if spec.mode == 'load' then
  local active = {}
  for _, number in ipairs(spec.active) do active[number] = true end
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
  for _, number in ipairs(redis.call('ZRANGE', K_IDLE, 0, -1)) do
    if not active[number] then retire(number) end
  end
  for _, number in ipairs(redis.call('ZRANGE', K_BUSY, 0, -1)) do
    if not active[number] then retire(number) end
  end
  added = add(spec.active, spec.idle_since)
elseif spec.mode == 'add' then
  added = add(spec.active, spec.idle_since)
elseif spec.mode == 'retire' then
  for _, number in ipairs(spec.retired) do retire(number) end
end

redis.pcall('XGROUP', 'CREATE', K_EVENTS, 'recorders', '0', 'MKSTREAM')
local reply = {was_loaded, added, restored, #removed, retiring}
for _, number in ipairs(removed) do table.insert(reply, number) end
return reply
