"""The two Lua scripts behind the shared limiter: take a slot, and learn from a 429 -- atomic in Redis.

Why our own scripts and not ``pyrate-limiter``'s Redis GCRA: that one admits or rejects a request at a
time the *client* supplies (``time_ns``, never Redis ``TIME``), so processes on machines with skewed
clocks would disagree about the bucket; a rejected caller polls again, so a hundred waiting threads
wake together and race for each slot; and the rate is fixed per call, with no shared pause and nothing
that learns from 429s. Here every caller *reserves* the next free slot (GCRA "virtual scheduling", as
:class:`~airflow_provider_crowdtwist.client.ratelimit.RateLimiter` does in one process), the clock is
Redis ``TIME`` (one clock for every machine), and the pace, the pause and what the 429s taught live in
the same hash, so one script call updates them together.

State: one hash per program, times in integer microseconds of Redis ``TIME`` (exact in a Lua double),
rates in requests per second. Every call refreshes the hash's expiry, so the state of a program nobody
syncs any more -- or of workers that crashed -- disappears by itself.

Fields: ``tat`` (theoretical arrival time of the next slot), ``paused_until``, ``epoch`` (bumped by every
pause and cut: a slot reserved under an older epoch is reserved again), ``base``/``base_at``/``climb``
(the pace: ``base`` req/s at ``base_at``, climbing ``climb`` req/s per second after a cut), ``learned``
(the real rate measured between 429s), ``hold``/``hold_until`` (the climb stops just under
``learned`` until then), ``pause_from`` (when the
last pause began), ``decreased_at``, ``last_429_at``, ``episode_start``,
``accepted`` (successes reported by every process), ``acc_episode``/``acc_last_429`` (its value at those
two marks), ``decreases``, ``rate_limited``, ``pauses``.
"""

from __future__ import annotations

#: The pace at ``now`` (shared by the scripts): the climb after a cut, held at ``hold`` (just under the
#: measured real rate) until ``hold_until``, then climbing again (a probe), never above the ceiling.
_PACE = """
local function pace(base, base_at, climb, ceiling, now, hold, hold_until)
    local rate = base
    if climb > 0 and now > base_at then
        rate = base + climb * (now - base_at) / 1e6
        if hold ~= nil and hold_until ~= nil and base <= hold then
            rate = math.min(rate, hold + climb * math.max(0, now - hold_until) / 1e6)
        end
    end
    if rate > ceiling then
        rate = ceiling
    end
    return rate
end
local function num(value, default)
    local n = tonumber(value)
    if n == nil then
        return default
    end
    return n
end
"""

#: KEYS[1] the program's hash. ARGV: ceiling req/s, burst, ttl s, successes to add, held epoch (-1: none).
#: Returns {wait us, epoch of the slot (-1: paused, try again), now us}.
ACQUIRE = (
    _PACE
    + """
local key = KEYS[1]
local ceiling = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local pending = tonumber(ARGV[4])
local held = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if pending > 0 then
    redis.call('HINCRBY', key, 'accepted', pending)
end
local s = redis.call('HMGET', key, 'tat', 'paused_until', 'epoch', 'base', 'base_at', 'climb', 'hold',
    'hold_until')
local paused = num(s[2], 0)
local epoch = num(s[3], 0)
if held >= 0 and held == epoch and now >= paused then
    redis.call('EXPIRE', key, ttl)
    return {0, epoch, now}
end
if now < paused then
    redis.call('EXPIRE', key, ttl + math.ceil((paused - now) / 1e6))
    return {paused - now, -1, now}
end
local base = num(s[4], ceiling)
local base_at = num(s[5], now)
local climb = num(s[6], 0)
local rate = pace(base, base_at, climb, ceiling, now, tonumber(s[7]), tonumber(s[8]))
if climb > 0 and rate >= ceiling then
    redis.call('HSET', key, 'base', ceiling, 'climb', 0)
end
local interval = 1e6 / rate
local tat = num(s[1], now)
if tat < now then
    tat = now
end
local allowed = tat - math.max(0, burst - 1) * interval
redis.call('HSET', key, 'tat', tat + interval)
redis.call('EXPIRE', key, ttl)
local wait = allowed - now
if wait < 0 then
    wait = 0
end
return {math.floor(wait), epoch, now}
"""
)

#: KEYS[1] the program's hash. ARGV: ceiling req/s, burst, ttl s, successes to add, Retry-After us (-1:
#: none), the slot's time us (-1: unknown), adaptive 1|0, decrease factor, probe fraction, margin,
#: floor req/s, episode quiet s, measure min s, measure min count, hold s.
#: Returns {cut 1|0, new pace, old pace, learned (-1: none), paused until us} (numbers as text).
RATE_LIMITED = (
    _PACE
    + """
local key = KEYS[1]
local ceiling = tonumber(ARGV[1])
local burst = math.max(1, tonumber(ARGV[2]))
local ttl = tonumber(ARGV[3])
local pending = tonumber(ARGV[4])
local retry_after = tonumber(ARGV[5])
local sent_at = tonumber(ARGV[6])
local adaptive = tonumber(ARGV[7]) == 1
local factor = tonumber(ARGV[8])
local probe = tonumber(ARGV[9])
local margin = tonumber(ARGV[10])
local floor = tonumber(ARGV[11])
local quiet_min = tonumber(ARGV[12])
local measure_s = tonumber(ARGV[13])
local measure_n = tonumber(ARGV[14])
local hold_s = tonumber(ARGV[15])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local accepted = redis.call('HINCRBY', key, 'accepted', pending)
redis.call('HINCRBY', key, 'rate_limited', 1)
local s = redis.call('HMGET', key, 'tat', 'paused_until', 'epoch', 'base', 'base_at', 'climb', 'learned',
    'decreased_at', 'last_429_at', 'episode_start', 'acc_episode', 'acc_last_429', 'decreases', 'hold',
    'hold_until', 'pause_from')
local tat = num(s[1], now)
local paused = num(s[2], 0)
local epoch = num(s[3], 0)
local base = num(s[4], ceiling)
local base_at = num(s[5], now)
local climb = num(s[6], 0)
local learned = tonumber(s[7])
local decreased_at = num(s[8], -1)
local last_429 = tonumber(s[9])
local episode_start = tonumber(s[10])
local acc_episode = num(s[11], 0)
local acc_last_429 = num(s[12], 0)
local decreases = num(s[13], 0)
local hold = tonumber(s[14])
local hold_until = tonumber(s[15])
local old = pace(base, base_at, climb, ceiling, now, hold, hold_until)
-- A pause starts with the first Retry-After of an episode. The 429s of requests already in flight
-- when it started say the same thing again, later: they do not stretch it (the bucket refills during
-- the pause only up to its size, so a stretched pause is capacity lost for every task).
local pause_from = num(s[16], -1)
local new_news = now >= paused or sent_at < 0 or sent_at >= pause_from
if retry_after > 0 and new_news then
    local until_ = now + retry_after
    if until_ > paused then
        if now >= paused then
            pause_from = now
        end
        if climb > 0 then
            base = old
            base_at = math.max(now, until_)
        end
        paused = until_
        -- after the pause, one request at a time at the sustained pace: no free burst
        tat = math.max(tat, until_ + burst * 1e6 / old)
        epoch = epoch + 1
        redis.call('HINCRBY', key, 'pauses', 1)
    end
end
-- what the server accepted between two moments it was saturated is its real rate
local since
local taken
local quiet = math.max(quiet_min, 10 / old)
if episode_start == nil or last_429 == nil or (now - last_429) / 1e6 > quiet then
    since = last_429
    taken = accepted - acc_last_429
    episode_start = now
    acc_episode = accepted
else
    since = episode_start
    taken = accepted - acc_episode
end
last_429 = now
acc_last_429 = accepted
local cut = 0
local new = old
if adaptive and not (sent_at >= 0 and sent_at < decreased_at) then
    local measured = nil
    if since ~= nil and (now - since) / 1e6 >= measure_s and taken >= measure_n then
        measured = taken / ((now - since) / 1e6)
        learned = measured
    end
    if measured ~= nil then
        new = math.min(old, measured) * (1 - margin)
    elseif learned ~= nil then
        new = math.max(old * factor, math.min(old, learned) * (1 - margin))
    elseif decreases == 0 then
        new = old * 0.5
    else
        new = old * factor
    end
    new = math.min(ceiling, math.max(floor, new))
    base = new
    base_at = math.max(now, paused)
    decreased_at = now
    climb = probe * (learned or ceiling)
    if learned ~= nil then
        -- climb back to just under the real rate, then stay there for hold_s before probing above it:
        -- every probe over the limit costs a 429 and, with Retry-After, a pause of every task
        hold = learned * (1 - margin)
        hold_until = now + hold_s * 1e6
    end
    -- slots already handed out were at the old pace: void them
    tat = math.max(now, paused) + burst * 1e6 / new
    epoch = epoch + 1
    decreases = decreases + 1
    cut = 1
end
redis.call('HSET', key, 'tat', tat, 'paused_until', paused, 'epoch', epoch, 'base', base,
    'base_at', base_at, 'climb', climb, 'decreased_at', decreased_at, 'last_429_at', last_429,
    'episode_start', episode_start, 'acc_episode', acc_episode, 'acc_last_429', acc_last_429,
    'decreases', decreases, 'pause_from', pause_from)
if learned ~= nil then
    redis.call('HSET', key, 'learned', learned)
end
if hold ~= nil then
    redis.call('HSET', key, 'hold', hold, 'hold_until', hold_until)
end
redis.call('EXPIRE', key, math.max(ttl, math.ceil((paused - now) / 1e6) + ttl))
return {cut, string.format('%.6f', new), string.format('%.6f', old),
    string.format('%.6f', learned or -1), string.format('%.0f', paused)}
"""
)

#: A pause for everyone without a 429 (``SharedRateLimiter.pause``). KEYS[1]; ARGV: seconds us, burst,
#: ceiling req/s, ttl s. Returns the paused-until time, us.
PAUSE = (
    _PACE
    + """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local s = redis.call('HMGET', key, 'tat', 'paused_until', 'epoch', 'base', 'base_at', 'climb', 'hold',
    'hold_until')
local paused = num(s[2], 0)
if until_ > paused then
    local ceiling = tonumber(ARGV[3])
    local rate = pace(num(s[4], ceiling), num(s[5], now), num(s[6], 0), ceiling, now, tonumber(s[7]),
        tonumber(s[8]))
    local tat = math.max(num(s[1], now), until_ + math.max(1, tonumber(ARGV[2])) * 1e6 / rate)
    if num(s[6], 0) > 0 then
        redis.call('HSET', key, 'base', rate, 'base_at', until_)
    end
    if now >= paused then
        redis.call('HSET', key, 'pause_from', now)
    end
    redis.call('HSET', key, 'paused_until', until_, 'tat', tat, 'epoch', num(s[3], 0) + 1)
    redis.call('HINCRBY', key, 'pauses', 1)
    paused = until_
end
redis.call('EXPIRE', key, tonumber(ARGV[4]) + math.ceil((paused - now) / 1e6))
return string.format('%.0f', paused)
"""
)
