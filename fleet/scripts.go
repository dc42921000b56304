package fleet

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts. Each touches the keys of one stream key only (one hash
// tag, one Cluster slot) and runs atomically, so that no reader sees half an
// append and no two writers interleave. go-redis sends EVALSHA and falls
// back to EVAL once per server.

// entryOverhead estimates an event's SSE framing beyond its data (id, event
// and data field names, line ends), so that HistoryBytes means roughly what
// the hub's in-memory bound means.
const entryOverhead = 48

// countSubscribers records, in the key's subscriber hash, how many clients
// of the key a replica has (field: replica token, value "<count> <expiry
// ms>", by the server's clock), drops the counts that ran out, and returns
// the sum: every replica's lease loop reports its own, so the holder knows
// the subscribers of the whole fleet (the load contract's pages).
const countSubscribers = `
local function count(key, token, n, ttl)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', key, token, n .. ' ' .. string.format('%d', now + tonumber(ttl)))
  redis.call('PEXPIRE', key, ttl)
  local sum = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local c, exp = string.match(all[i + 1], '(%d+) (%d+)')
    if c and tonumber(exp) > now then
      sum = sum + tonumber(c)
    else
      redis.call('HDEL', key, all[i])
    end
  end
  return sum
end
`

// acquireScript: KEYS lease, state, subscribers; ARGV token, lease ms, the
// caller's subscribers. Returns {1, ”, fleet subscribers} if the caller
// held it already (renewed), {2, last writer, ...} if it was free and is now
// the caller's, {0, ms left, ...} if another replica holds it.
var acquireScript = redis.NewScript(countSubscribers + `
local subs = count(KEYS[3], ARGV[1], ARGV[3], ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, '', subs}
end
if cur then
  return {0, redis.call('PTTL', KEYS[1]), subs}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {2, redis.call('HGET', KEYS[2], 'w') or '', subs}
`)

// renewScript: compare-and-pexpire. KEYS lease, state, events, subscribers;
// ARGV token, lease ms, state ms, the caller's subscribers. Keeps the key's
// state alive while it is polled. Returns {held 0 or 1, fleet subscribers}.
var renewScript = redis.NewScript(countSubscribers + `
local subs = count(KEYS[4], ARGV[1], ARGV[4], ARGV[2])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, subs} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {1, subs}
`)

// releaseScript: compare-and-delete. KEYS lease; ARGV token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// forgetScript: compare-and-delete of a key's state and history by its
// lease holder. KEYS lease, state, events; ARGV token.
var forgetScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`)

// Every append draws a random tag, stored with each of its events (field h)
// and as the state's tag. A position is the triple (epoch, id, tag): if a
// Redis failover loses the newest appends and a writer then reuses their ids
// in the same epoch, the tags differ, and whoever notices (a writer's
// append, a follower's read) deletes the key's state, so the next append
// draws a new epoch and every client resyncs with a snapshot instead of
// taking the new events for the continuation of the lost ones.

// appendScript writes one poll's outcome if the key is still at the position
// the writer read (compare-and-append).
// KEYS state, events.
// ARGV 1 writer token, 2 expected epoch (” = first body: no state may
// exist), 3 expected last id, 4 expected tag (” = any), 5 epoch for a first
// body, 6 this append's tag, 7 body, 8 ETag, 9 Last-Modified, 10 max events,
// 11 max bytes (0: none), 12 state ms, 13 notification channel (” = none),
// 14.. kind, data pairs.
// Returns {1, epoch, last, tag} when written, {0, epoch, last, tag} (the
// current position, ” and 0 without state) on conflict.
var appendScript = redis.NewScript(`
local st, ev = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', st, 'e', 's', 'n', 'h')
local epoch, seq, bytes, tag = cur[1], tonumber(cur[2]), tonumber(cur[3]) or 0, cur[4] or ''
local first = ARGV[2] == ''
local prev = 0
local nev = (#ARGV - 13) / 2
if first then
  if epoch then return {0, epoch, string.format('%d', seq), tag} end
  -- A new life of the key: whatever history is left belongs to no epoch.
  epoch, seq, bytes, nev = ARGV[5], 1, 0, 0
  redis.call('DEL', ev)
elseif epoch ~= ARGV[2] or seq ~= tonumber(ARGV[3]) or (ARGV[4] ~= '' and tag ~= ARGV[4]) then
  if epoch == ARGV[2] and (seq < tonumber(ARGV[3]) or seq == tonumber(ARGV[3])) then
    -- The key went back in its own epoch (a failover lost appends): end
    -- this epoch, so that nobody takes what follows for continuity.
    redis.call('DEL', st, ev)
    return {0, '', '0', ''}
  end
  return {0, epoch or '', string.format('%d', seq or 0), tag}
else
  prev = seq
  local top = redis.call('XREVRANGE', ev, '+', '-', 'COUNT', 1)
  if #top > 0 and tonumber(string.match(top[1][1], '^(%d+)')) > seq then
    -- Events beyond the state (a partial loss): neither can be trusted.
    -- Checked before any write, since a failing script keeps its writes.
    redis.call('DEL', st, ev)
    return {0, '', '0', ''}
  end
  for i = 14, #ARGV, 2 do
    seq = seq + 1
    redis.call('XADD', ev, string.format('%d-0', seq), 'k', ARGV[i], 'd', ARGV[i + 1], 'h', ARGV[6])
    bytes = bytes + #ARGV[i + 1] + ` + strconv.Itoa(entryOverhead) + `
  end
  if nev > 0 then
    local maxLen, maxBytes = tonumber(ARGV[10]), tonumber(ARGV[11])
    local len = redis.call('XLEN', ev)
    local function over() return len > maxLen or (maxBytes > 0 and bytes > maxBytes) end
    while over() do
      local batch = redis.call('XRANGE', ev, '-', '+', 'COUNT', 64)
      if #batch == 0 then bytes = 0; break end
      local cut
      for _, e in ipairs(batch) do
        if not over() then break end
        bytes = bytes - (#e[2][4] + ` + strconv.Itoa(entryOverhead) + `)
        len = len - 1
        cut = e[1]
      end
      local s = tonumber(string.match(cut, '^(%d+)'))
      redis.call('XTRIM', ev, 'MINID', string.format('%d-0', s + 1))
    end
  else
    ARGV[6] = tag -- no event: the position, and so its tag, stay
  end
end
redis.call('HSET', st, 'e', epoch, 's', string.format('%d', seq), 'n', string.format('%d', bytes),
  'h', ARGV[6], 'b', ARGV[7], 't', ARGV[8], 'm', ARGV[9], 'w', ARGV[1])
redis.call('PEXPIRE', st, ARGV[12])
if redis.call('EXISTS', ev) == 1 then redis.call('PEXPIRE', ev, ARGV[12]) end
if ARGV[13] ~= '' and (first or nev > 0) then
  redis.call('PUBLISH', ARGV[13], epoch .. ' ' .. string.format('%d %d', prev, seq) .. ' ' .. ARGV[6])
end
return {1, epoch, string.format('%d', seq), ARGV[6]}
`)

// sinceScript reads the events after a position, checking the epoch and
// tag in the same step so that events of a newer life of the key are never
// taken for the continuation of an older one.
// KEYS state, events; ARGV epoch, after id, tag of after (” = unchecked),
// most events, with body ('1').
// Returns {0} when the position is unknown (another epoch, trimmed, no
// state), {2} when it contradicts the history (a fork: the state is deleted
// so that a new epoch follows), else {1, last, tag, has body, body, entries};
// the body is the one at last, sent only once entries reach it.
var sinceScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'e', 's', 'h')
if not cur[1] or cur[1] ~= ARGV[1] then return {0} end
local last, after = tonumber(cur[2]), tonumber(ARGV[2])
if after < 1 then return {0} end
local fork = after > last or (after == last and ARGV[3] ~= '' and cur[3] ~= ARGV[3])
local evs = {}
if not fork and after < last then
  local at = string.format('%d-0', after)
  evs = redis.call('XRANGE', KEYS[2], at, '+', 'COUNT', tonumber(ARGV[4]) + 1)
  if #evs > 0 and evs[1][1] == at then
    fork = ARGV[3] ~= '' and evs[1][2][6] ~= ARGV[3]
    table.remove(evs, 1)
  end
  if not fork and (#evs == 0 or evs[1][1] ~= string.format('%d-0', after + 1)) then return {0} end
  if #evs > tonumber(ARGV[4]) then table.remove(evs) end
end
if fork then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {2}
end
local tag = cur[3] or ''
if #evs > 0 then tag = evs[#evs][2][6] end
if ARGV[5] == '1' and (#evs == 0 or evs[#evs][1] == string.format('%d-0', last)) then
  return {1, cur[2], tag, 1, redis.call('HGET', KEYS[1], 'b'), evs}
end
return {1, cur[2], tag, 0, '', evs}
`)

// loadScript reads a key's whole state and retained history at once.
// KEYS state, events; ARGV most events.
// Returns {0} without state, else {1, epoch, last, tag, body, ETag,
// Last-Modified, entries}.
var loadScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'e', 's', 'h', 'b', 't', 'm')
if not cur[1] then return {0} end
return {1, cur[1], cur[2], cur[3] or '', cur[4] or '', cur[5] or '', cur[6] or '',
  redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[1])}
`)

// heartbeatScript announces a replica until ARGV ms from now (by the
// server's clock, so replicas' clocks may disagree) with the number of
// leases it holds, or, with 0 ms, withdraws it; it returns the replicas
// announced and the leases they hold in all.
// KEYS replicas, leases; ARGV token, ms, leases held.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local leases = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if redis.call('ZSCORE', KEYS[1], all[i]) then
    leases = leases + tonumber(all[i + 1])
  else
    redis.call('HDEL', KEYS[2], all[i])
  end
end
return {redis.call('ZCARD', KEYS[1]), leases}
`)
