-- request.lua: admit one web callback request, or refuse it, under every abuse limit at once.
-- Not a pool script: it runs alone. Every key carries the site's hash tag {cb<site>}.
-- KEYS[1] the client's requests to this number (sorted set: request id -> at ms)
-- KEYS[2] the numbers the client asked for (sorted set: phone -> last request ms)
-- KEYS[3] the client's flag (string: "<until ms>|<why>"; the client is refused until then)
-- KEYS[4] the site's callbacks in progress (sorted set: callback id -> lapse ms)
-- ARGV[1] now ms   ARGV[2] callback id   ARGV[3] phone (E.164)
-- ARGV[4] per-number windows, "limit:ms,limit:ms,..." (e.g. "7:900000,9:3600000,15:86400000")
-- ARGV[5] distinct-number windows, "limit:ms,..." (e.g. "3:3600000,4:86400000"): the request
--         that makes the client's distinct numbers reach a limit is refused, and flags it
-- ARGV[6] how long a flag lasts (ms)   ARGV[7] the site's cap on callbacks in progress (0 = none)
-- ARGV[8] when this callback stops counting as in progress (lapse ms)
-- Returns {code, detail}: 0 admitted; 1 too many requests to this number (detail: the
-- window in ms); 2 too many numbers, now flagged (detail: the window in ms); 3 flagged
-- earlier (detail: why); 4 the site's cap reached (detail: the cap).
local now = tonumber(ARGV[1])
local id, phone = ARGV[2], ARGV[3]

local function windows(spec)
  local out = {}
  for limit, span in string.gmatch(spec, '(%d+):(%d+)') do
    out[#out + 1] = {tonumber(limit), tonumber(span)}
  end
  return out
end

local flag = redis.call('GET', KEYS[3])
if flag then
  local sep = string.find(flag, '|', 1, true)
  if sep and tonumber(string.sub(flag, 1, sep - 1)) > now then
    return {3, string.sub(flag, sep + 1)}
  end
end

local longest = 0
for _, w in ipairs(windows(ARGV[4])) do
  if w[2] > longest then longest = w[2] end
  if w[1] > 0 and redis.call('ZCOUNT', KEYS[1], now - w[2] + 1, '+inf') >= w[1] then
    return {1, tostring(w[2])}
  end
end

local longest_numbers = 0
local known = redis.call('ZSCORE', KEYS[2], phone)
for _, w in ipairs(windows(ARGV[5])) do
  if w[2] > longest_numbers then longest_numbers = w[2] end
  local distinct = redis.call('ZCOUNT', KEYS[2], now - w[2] + 1, '+inf')
  local inside = known and tonumber(known) > now - w[2]
  if not inside then distinct = distinct + 1 end
  if w[1] > 0 and distinct >= w[1] then
    local why = 'numbers:' .. w[2]
    redis.call('SET', KEYS[3], (now + tonumber(ARGV[6])) .. '|' .. why, 'PX', ARGV[6])
    return {2, tostring(w[2])}
  end
end

local cap = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[4]) >= cap then
  return {4, tostring(cap)}
end

redis.call('ZADD', KEYS[1], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
redis.call('PEXPIRE', KEYS[1], longest)
redis.call('ZADD', KEYS[2], now, phone)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - longest_numbers)
redis.call('PEXPIRE', KEYS[2], longest_numbers)
redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), id)
return {0, ''}
