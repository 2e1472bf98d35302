-- touch.lua: record that the visitor of a session tapped a tel: link showing the number the
-- session holds, or copied it: evidence for matching of who dialled. Only the holder's own
-- number is ever recorded, so a page cannot plant evidence for a number it does not hold.
-- KEYS[1..8] pool state (pools/keys.py)   KEYS[9] the pool's touches (hash: number -> JSON)
-- KEYS[10] the session's touches in this window
-- ARGV[1] session id   ARGV[2] now_ms   ARGV[3] site key
-- ARGV[4] the digits of the number touched, as the page showed it: international
--         (18005550123) or national (8005550123, 02079460123)
-- ARGV[5] kind: click or copy
-- ARGV[6] touches recorded per session per window (0 = no limit)   ARGV[7] window ms
-- ARGV[8] touches kept per number   ARGV[9] how long a touch is kept (ms)
-- Returns {code, number}: 0 recorded, 1 the session holds no number here, 2 it holds
-- another number, 3 past the session's limit (nothing recorded), -1 pool not loaded,
-- -2 pool belongs to another site.
-- The number's touches are one JSON list, oldest first, of [session, kind, at_ms]: each
-- (session, kind) once, at its latest touch, so one busy page cannot push out the touches of
-- the number's earlier holders; at most ARGV[8] entries, none older than ARGV[9] ms.
local session, now_s, shown, kind = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local now = tonumber(now_s)
local site = redis.call('HGET', K_META, 'site')
if not site then return {-1, ''} end
if site ~= ARGV[3] then return {-2, ''} end

-- The session's number, while the session still holds it (a lease past its expiry that
-- reclaim has not ended yet is still its own: nobody else can hold the number meanwhile).
local number = redis.call('HGET', K_SESSION, session)
if not number then return {1, ''} end
local holder = split_holder(redis.call('HGET', K_HOLDER, number))
if holder ~= session then return {1, ''} end

-- The page shows the number in its own layout: international digits, or national ones with
-- a trunk prefix (0...). Either ends with the significant digits of the number held.
local held = string.gsub(number, '%D', '')
local tail = string.gsub(shown, '^0+', '')
if #tail < 6 or string.sub(held, -#tail) ~= tail then return {2, number} end

if renewal_limited(KEYS[10], now, tonumber(ARGV[6]), ARGV[7]) then
  redis.call('HINCRBY', K_STATS, 'touches_limited', 1)
  return {3, number}
end

local keep_from = now - tonumber(ARGV[9])
local kept = {}
local stored = redis.call('HGET', KEYS[9], number)
if stored then
  for _, t in ipairs(cjson.decode(stored)) do
    if tonumber(t[3]) > keep_from and not (t[1] == session and t[2] == kind) then
      kept[#kept + 1] = t
    end
  end
end
kept[#kept + 1] = {session, kind, now_s}
local cap = tonumber(ARGV[8])
while #kept > cap do table.remove(kept, 1) end
redis.call('HSET', KEYS[9], number, cjson.encode(kept))
-- Numbers nobody touches for that long leave with the whole hash.
redis.call('PEXPIRE', KEYS[9], ARGV[9])
redis.call('HINCRBY', K_STATS, 'touches', 1)
return {0, number}
