-- reclaim.lua: end every lease whose expiry has passed (at most ARGV[2] of them).
-- KEYS[1..8] pool state (pools/keys.py)
-- ARGV[1] now_ms   ARGV[2] limit
-- Returns the number of leases ended, or -1 if the pool is not loaded.
if redis.call('EXISTS', K_META) == 0 then return -1 end
return reclaim_expired(tonumber(ARGV[1]), tonumber(ARGV[2]))
