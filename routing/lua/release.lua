-- release.lua: a call leaves a buyer (declined, unanswered, or hung up): free its slot and
-- count what it earned, once.
-- KEYS: as reserve.lua (live calls, hour/day/month/total counts, last offer, this caller's
-- duplicate marker, each target's live calls)
-- ARGV[1] call id   ARGV[2] now_ms   ARGV[3] 1 = the buyer answered (a connection)
-- ARGV[4] 1 = converted   ARGV[5] revenue earned (cents)
-- ARGV[6] seconds a caller stays a duplicate (0 = never)
-- ARGV[7] what makes one: 'connected' | 'converted'
-- ARGV[8..10] seconds the hour, day and month counts are kept
-- Returns 1 when the slot was freed now, 0 when it was not held (a redelivered hang-up, or
-- released before): nothing is counted then.
local call = ARGV[1]
if redis.call('ZREM', KEYS[1], call) == 0 then return 0 end
for t = 8, #KEYS do redis.call('ZREM', KEYS[t], call) end
local connected, converted = ARGV[3] == '1', ARGV[4] == '1'
local ttl = {ARGV[8], ARGV[9], ARGV[10]}
for i = 2, 5 do
  if connected then redis.call('HINCRBY', KEYS[i], 'connections', 1) end
  if converted then
    redis.call('HINCRBY', KEYS[i], 'conversions', 1)
    redis.call('HINCRBY', KEYS[i], 'revenue', ARGV[5])
  end
  if ttl[i - 1] and (connected or converted) then redis.call('EXPIRE', KEYS[i], ttl[i - 1]) end
end
local dup_seconds = tonumber(ARGV[6])
if dup_seconds > 0 and ((ARGV[7] == 'connected' and connected) or converted) then
  redis.call('SET', KEYS[7], '1', 'EX', dup_seconds)
end
return 1
