-- reserve.lua: check every cap of one buyer and take a slot for a call, atomically.
-- KEYS[1] the buyer's live calls (sorted set: call -> hold lapse ms)
-- KEYS[2..5] counts (hash: calls, connections, conversions, revenue in cents) of this hour,
--   day and month in the buyer's zone, and in total
-- KEYS[6] last offer (ms, for spacing)   KEYS[7] this caller's duplicate marker
-- KEYS[8..] each target's live calls (sorted set, in the buyer's target order)
-- ARGV[1] call id   ARGV[2] now_ms   ARGV[3] hold_ms (a slot lapses unreleased after this)
-- ARGV[4] a random number in [0, 1) (the target pick)   ARGV[5] buyer concurrency (0 = none)
-- ARGV[6] spacing ms (0 = none)   ARGV[7] 1 = refuse a duplicate caller
-- ARGV[8] revenue per conversion (cents)
-- ARGV[9] caps "period:metric:limit,..." (period hour|day|month|total; revenue in cents)
-- ARGV[10..12] seconds the hour, day and month counts are kept
-- ARGV[13..] per target: weight, concurrency (0 = none)
-- Returns {1, target index (0-based), 'new' | 'held'}: reserved now, or already held by this
-- call (a redelivered webhook: nothing is counted twice); or {0, reason}: 'duplicate',
-- 'spacing', 'cap:<period>:<metric>', 'concurrency', 'concurrency:target'.
-- Calls ringing or connected count toward the connection, conversion and revenue caps: each
-- may still earn one.
local call, now = ARGV[1], tonumber(ARGV[2])
local K_LIVE, K_LAST, K_DUP = KEYS[1], KEYS[6], KEYS[7]
local PERIOD_KEY = {hour = KEYS[2], day = KEYS[3], month = KEYS[4], total = KEYS[5]}
local PERIOD_TTL = {hour = ARGV[10], day = ARGV[11], month = ARGV[12]}
local targets = (#ARGV - 12) / 2

redis.call('ZREMRANGEBYSCORE', K_LIVE, '-inf', now)
for t = 1, targets do redis.call('ZREMRANGEBYSCORE', KEYS[7 + t], '-inf', now) end

if redis.call('ZSCORE', K_LIVE, call) then
  for t = 1, targets do
    if redis.call('ZSCORE', KEYS[7 + t], call) then return {1, t - 1, 'held'} end
  end
end
if ARGV[7] == '1' and redis.call('EXISTS', K_DUP) == 1 then return {0, 'duplicate'} end
local spacing = tonumber(ARGV[6])
if spacing > 0 then
  local last = tonumber(redis.call('GET', K_LAST) or '-1e18')
  if now - last < spacing then return {0, 'spacing'} end
end

local live = redis.call('ZCARD', K_LIVE)
local revenue = tonumber(ARGV[8])
for period, metric, limit in string.gmatch(ARGV[9], '(%a+):(%a+):(%d+)') do
  local used = tonumber(redis.call('HGET', PERIOD_KEY[period], metric) or '0')
  local after
  if metric == 'calls' then after = used + 1
  elseif metric == 'revenue' then after = used + (live + 1) * revenue
  else after = used + live + 1 end
  if after > tonumber(limit) then return {0, 'cap:' .. period .. ':' .. metric} end
end
local concurrency = tonumber(ARGV[5])
if concurrency > 0 and live >= concurrency then return {0, 'concurrency'} end

-- A target with room, at random by weight.
local open, total = {}, 0
for t = 1, targets do
  local limit = tonumber(ARGV[12 + 2 * t])
  if limit == 0 or redis.call('ZCARD', KEYS[7 + t]) < limit then
    local weight = tonumber(ARGV[11 + 2 * t])
    if weight > 0 then
      open[#open + 1] = t
      total = total + weight
    end
  end
end
if #open == 0 then return {0, 'concurrency:target'} end
local pick, chosen = tonumber(ARGV[4]) * total, open[#open]
for _, t in ipairs(open) do
  pick = pick - tonumber(ARGV[11 + 2 * t])
  if pick < 0 then chosen = t break end
end

local lapse = now + tonumber(ARGV[3])
redis.call('ZADD', K_LIVE, lapse, call)
redis.call('ZADD', KEYS[7 + chosen], lapse, call)
redis.call('PEXPIRE', K_LIVE, ARGV[3])
redis.call('PEXPIRE', KEYS[7 + chosen], ARGV[3])
if spacing > 0 then redis.call('SET', K_LAST, now, 'PX', spacing) end
for period, key in pairs(PERIOD_KEY) do
  redis.call('HINCRBY', key, 'calls', 1)
  if PERIOD_TTL[period] then redis.call('EXPIRE', key, PERIOD_TTL[period]) end
end
return {1, chosen - 1, 'new'}
