"""The Lua scripts that make every limit check one atomic step on the Redis server's clock.

Counters are hashes ``{w: window id, n: amount}`` (a count from another window reads
as 0), so a script touches only the keys it is given. Parallel requests are leases:
sorted sets of lease ids scored by their expiry, pruned on every read.
"""

from __future__ import annotations

# KEYS: one per check (the mandatory ones, then each candidate deployment's), then the cache entry's key.
# ARGV[1]: one JSON array (one argument for the client to encode, not one per number):
#   [window ms, lease id, lease ttl ms, mandatory count, 1 to read the cache, 1 when the answer is known to
#    come from a cache, the entry's oldest acceptable age in ms (-1: any), [check count of each candidate],
#    [kind, limit, amount, kind, limit, amount...]]   kind: r requests, t tokens, p parallel
# Returns {1, chosen candidate (0: none), ms to the window's end, window id, cached entry or '', used...}
#      or {0, failing check, ms to the window's end, window id, '', used by the failing check,
#          used by each mandatory check (for the answer's headers)}.
# Nothing is written unless every check fits.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local arg = cjson.decode(ARGV[1])
local window = arg[1]
local win = math.floor(now / window)
local reset = (win + 1) * window - now
local lease, lease_ttl, n_mand = arg[2], arg[3], arg[4]
local counts, flat = arg[8], arg[9]
local n_cand = #counts
local n_checks = n_mand
for c = 1, n_cand do n_checks = n_checks + counts[c] end
local kind, limit, amount = {}, {}, {}
for i = 1, n_checks do
  kind[i] = flat[3 * i - 2]; limit[i] = flat[3 * i - 1]; amount[i] = flat[3 * i]
end
local cached = false
if arg[5] == 1 then
  cached = redis.call('GET', KEYS[n_checks + 1])
  -- an entry starts with the 13 digits of the server time (ms) it was stored at
  if cached and arg[7] >= 0 and now - tonumber(string.sub(cached, 1, 13)) > arg[7] then cached = false end
end
local hit = cached or arg[6] == 1
local used = {}
local function fits(i)
  local k = KEYS[i]
  if kind[i] == 'p' then
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    used[i] = redis.call('ZCARD', k)
  else
    local v = redis.call('HMGET', k, 'w', 'n')
    if tonumber(v[1]) == win then used[i] = tonumber(v[2]) else used[i] = 0 end
  end
  if hit and kind[i] == 't' then amount[i] = 0 end
  return amount[i] == 0 or used[i] + amount[i] <= limit[i]
end
local function refuse(failed)
  local out = {0, failed, reset, win, '', used[failed]}
  for i = 1, n_mand do
    if used[i] == nil then fits(i) end
    out[#out + 1] = used[i]
  end
  return out
end
for i = 1, n_mand do
  if not fits(i) then return refuse(i) end
end
local chosen, first = 0, n_mand + 1
if not hit and n_cand > 0 then
  local failed = 0
  for c = 1, n_cand do
    local ok = true
    for i = first, first + counts[c] - 1 do
      if not fits(i) then
        ok = false
        if failed == 0 then failed = i end
        break
      end
    end
    if ok then chosen = c; break end
    first = first + counts[c]
  end
  if chosen == 0 then return refuse(failed) end
end
local out = {1, chosen, reset, win, cached or ''}
local function take(i)
  local k = KEYS[i]
  if kind[i] == 'p' then
    redis.call('ZADD', k, now + lease_ttl, lease)
    redis.call('PEXPIRE', k, lease_ttl * 2)
    used[i] = used[i] + 1
  elseif amount[i] ~= 0 then
    if used[i] == 0 then
      redis.call('HSET', k, 'w', win, 'n', amount[i])
    else
      redis.call('HINCRBY', k, 'n', amount[i])
    end
    redis.call('PEXPIRE', k, window * 2)
    used[i] = used[i] + amount[i]
  end
  out[#out + 1] = used[i]
end
for i = 1, n_mand do take(i) end
if chosen > 0 then
  for i = first, first + counts[chosen] - 1 do take(i) end
end
return out
"""

# KEYS: counters and lease sets, then (when storing) the cache entry's key.
# ARGV[1]: JSON [lease id, window id, [kind, token delta, kind, token delta...]] (one per key);
# ARGV[2], ARGV[3] (when storing): the entry and its ttl in ms. The entry is stored behind the 13 digits
# of the server's time in ms (its age, for `s-maxage`).
SETTLE = """
local arg = cjson.decode(ARGV[1])
local lease, win, flat = arg[1], arg[2], arg[3]
local n = #flat / 2
for i = 1, n do
  local kind, delta = flat[2 * i - 1], flat[2 * i]
  if kind == 'p' then
    redis.call('ZREM', KEYS[i], lease)
  elseif delta ~= 0 and tonumber(redis.call('HGET', KEYS[i], 'w')) == win then
    redis.call('HINCRBY', KEYS[i], 'n', delta)
  end
end
if ARGV[2] then
  local t = redis.call('TIME')
  local stamp = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  redis.call('SET', KEYS[n + 1], stamp .. ARGV[2], 'PX', ARGV[3])
end
return 1
"""

# KEYS: lease sets; ARGV: lease ttl ms, then the lease id held in each set. Pushes each expiry out.
RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) * 2)
end
return #KEYS
"""

# DualCache's atomic increment: INCRBYFLOAT, and the TTL set only when the key is new (a window's expiry holds).
INCREMENT = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""

# A deployment's failure. KEYS: its failure counter, its cooldown key. ARGV: allowed fails, cooldown ms,
# 1 to cool it down at once. Counts failures per minute; past `allowed fails`, or at once, the deployment
# cools down for the cooldown time. Returns the cooldown's ms left (-2: not cooling down).
FAIL = """
local fails = redis.call('INCR', KEYS[1])
if fails == 1 then redis.call('PEXPIRE', KEYS[1], 60000) end
if ARGV[3] == '1' or fails > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
return redis.call('PTTL', KEYS[2])
"""

# KEYS: cooldown keys. Returns each one's ms left (negative: not cooling down).
COOLDOWNS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('PTTL', KEYS[i]) end
return out
"""
