-- usage.lua: a buyer's live calls and counts, read at one instant (dni buyers, the dashboard).
-- KEYS: as reserve.lua (live calls, hour/day/month/total counts, last offer, a duplicate
-- marker (unread), each target's live calls)
-- ARGV[1] now_ms
-- Returns {live, {hour counts}, {day counts}, {month counts}, {total counts}, target live...}
-- where each counts list is the hash's flat field/value pairs.
local now = ARGV[1]
local out = {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
for i = 2, 5 do out[#out + 1] = redis.call('HGETALL', KEYS[i]) end
for t = 8, #KEYS do out[#out + 1] = redis.call('ZCOUNT', KEYS[t], '(' .. now, '+inf') end
return out
