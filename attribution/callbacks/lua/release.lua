-- release.lua: a callback ended (completed, failed or canceled): it no longer counts
-- against its site's cap on callbacks in progress.
-- KEYS[1] the site's callbacks in progress (sorted set: callback id -> lapse ms)
-- ARGV[1] the callback id
-- Returns 1 if it was counted, 0 if not (already released, or lapsed).
return redis.call('ZREM', KEYS[1], ARGV[1])
