-- release.lua: end this session's lease now (the visitor left for good).
-- KEYS[1..8] pool state (pools/keys.py)
-- ARGV[1] session id   ARGV[2] now_ms
-- Returns 0 released, 1 not held, -1 pool not loaded.
if redis.call('EXISTS', K_META) == 0 then return -1 end
local number = redis.call('HGET', K_SESSION, ARGV[1])
if not number then return 1 end
end_lease(number, ARGV[2], 'released')
return 0
