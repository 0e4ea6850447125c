/**
 * The Lua scripts of the Redis broker. Each runs atomically inside Redis, so what one script
 * does (assign a seq, append it to the stream, fan it out) is never interleaved with another
 * node's publish.
 *
 * Keys (`P` is the deployment's prefix; `{topic}` is a hash tag, so a topic's keys and its
 * sharded channel share one slot):
 *
 * | key | type | what |
 * |---|---|---|
 * | `P{topic}:meta` | hash | `seq` (last assigned), `epoch`, `ms` (time of the last message) |
 * | `P{topic}:h` | stream | history; entry id `<ms>-<seq>`, fields `f` (from, JSON), `n` (node), `d` (data) |
 * | `P{topic}:pr` | hash | presence: client → entry (JSON) |
 * | `P{topic}` | sharded channel | messages and topic signals, for nodes with an exact interest |
 * | `Pt:topic` | channel | the same messages, for pattern subscribers (PSUBSCRIBE) |
 * | `Ptopics` / `Ptick` | zset / counter | topics with history, by recency of publish (historyTopics) |
 * | `Ppatterns` | zset | `<node> <pattern>` → expiry ms: whether any node has a pattern interest |
 * | `Pnode:<id>` | string, PX | a node's liveness (heartbeat) |
 * | `Pnodes` | zset | node → expiry ms (to find dead nodes to sweep) |
 * | `Pnk:<id>` | set | what a node owns (presence and registry entries, unsettled claims), dropped with it |
 * | `Pn:<id>` | sharded channel | signals to one node |
 * | `Pc:<client>` | hash | registry: `node`, `user` |
 * | `Pu:<user>` | hash | client → node, for every connection of a user |
 * | `Ps:<id>` | string, PX | a session record (JSON) |
 * | `Pk:<key>` | string, PX | an idempotency claim |
 *
 * The index keys (`topics`, `patterns`, `nodes`) are global, so the scripts that touch them
 * name keys that are not in KEYS: the broker targets a standalone Redis (or one primary with
 * replicas), not Redis Cluster.
 *
 * Channel payloads are lines, with the free-form field last:
 * `m\n<seq>\n<epoch>\n<time>\n<node>\n<topic>\n<from JSON>\n<data JSON>` for a message,
 * `s\n<node>\n<kind>\n<target type>\n<target>\n<body JSON>` for a signal. Topics, node ids
 * and JSON text never contain a raw newline.
 */

/** Lines shared by the scripts: Redis time in ms, and node liveness. */
const COMMON = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

/**
 * Publish. KEYS: meta, stream, topics, tick, patterns[, claim key, node's set]. ARGV: topic,
 * node, from, data, candidate epoch, historySize, historyTtl, historyTopics, prefix, sharded
 * channel, pattern channel[, claim ttl, claim key]. Returns { seq, epoch, time }. With a
 * claim, it is settled with the seq in the same script: a retry after a lost reply finds it.
 *
 * INCR (HINCRBY) + XADD with an explicit id + SPUBLISH in one script: concurrent publishers
 * on different nodes get 1, 2, 3, … and the stream holds them in that order. The id is
 * `<ms>-<seq>` with ms never going backwards, so the stream trims by age with MINID.
 */
export const PUBLISH = `${COMMON}
local now = now_ms()
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'ms')
local epoch = meta[1]
local ms = tonumber(meta[2] or '0')
if seq == 1 or not epoch then
  -- The sequence (or its epoch) is new or vanished (Redis restarted empty, key evicted):
  -- start over, with an epoch that voids every earlier position.
  epoch = ARGV[5]
  seq = 1
  ms = 0
  redis.call('DEL', KEYS[2])
end
if now < ms then now = ms end
redis.call('HSET', KEYS[1], 'seq', seq, 'epoch', epoch, 'ms', now)
local size = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', size, now .. '-' .. seq,
    'f', ARGV[3], 'n', ARGV[2], 'd', ARGV[4])
  redis.call('XTRIM', KEYS[2], 'MINID', '~', math.max(0, now - ttl))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local tick = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], tick, ARGV[1])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[8])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[3], 0, over - 1)
  for _, t in ipairs(old) do
    redis.call('DEL', ARGV[9] .. '{' .. t .. '}:meta', ARGV[9] .. '{' .. t .. '}:h')
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1)
end
local payload = 'm\\n' .. seq .. '\\n' .. epoch .. '\\n' .. now .. '\\n' .. ARGV[2] .. '\\n' ..
  ARGV[1] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4]
redis.call('SPUBLISH', ARGV[10], payload)
if redis.call('ZCOUNT', KEYS[5], now, '+inf') > 0 then
  redis.call('PUBLISH', ARGV[11], payload)
end
if KEYS[6] then
  redis.call('SET', KEYS[6], seq, 'PX', ARGV[12])
  redis.call('SREM', KEYS[7], 'k\\n' .. ARGV[13])
end
return { seq, epoch, now }
`

/**
 * History. KEYS: meta, stream. ARGV: since, limit, historySize, historyTtl. Returns
 * { epoch, first, last, entries } (entries as XRANGE returns them).
 *
 * The stream holds consecutive seqs (it only loses entries at its head), and an id is
 * `<ms>-<seq>` with ms non-decreasing in seq; so the entry of seq S starts at `<ms(S)>-S`,
 * and ms(S) is found by a binary search over time (about 20–30 one-entry XRANGEs).
 * Count and age bounds are applied exactly here; the trims at publish are approximate.
 */
export const HISTORY = `${COMMON}
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'ms')
if not meta[2] then return { '', 0, 0, {} } end
local last = tonumber(meta[1])
local lastMs = tonumber(meta[3] or '0')
local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local size = tonumber(ARGV[3])
local horizon = math.max(0, now_ms() - tonumber(ARGV[4]))
local head = redis.call('XRANGE', KEYS[2], horizon, '+', 'COUNT', 1)
if #head == 0 then return { meta[2], 0, last, {} } end
local function seq_of(id) return tonumber(string.match(id, '%-(%d+)$')) end
local function ms_of(id) return tonumber(string.match(id, '^(%d+)%-')) end
local headSeq = seq_of(head[1][1])
local first = math.max(headSeq, last - size + 1)
if first > last then return { meta[2], 0, last, {} } end
local from = math.max(since + 1, first)
if from > last or limit <= 0 then return { meta[2], first, last, {} } end
local start
if from == headSeq then
  start = head[1][1]
else
  -- Largest m with "first entry at or after m has seq <= from": that is ms(from).
  local lo, hi = ms_of(head[1][1]), math.max(lastMs, ms_of(head[1][1]))
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    local e = redis.call('XRANGE', KEYS[2], mid, '+', 'COUNT', 1)
    if #e > 0 and seq_of(e[1][1]) <= from then lo = mid else hi = mid - 1 end
  end
  start = lo .. '-' .. from
end
return { meta[2], first, last, redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', limit) }
`

/**
 * Send a signal. ARGV: prefix, this node, target type, target, payload. Resolves the nodes
 * that hold the target (skipping this node and dead ones) and SPUBLISHes to each; a topic
 * signal goes on the topic's channel. Returns the number of nodes (or topic receivers).
 */
export const SIGNAL = `
local p, self, tt, tv, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if tt == 'topic' then
  return redis.call('SPUBLISH', p .. '{' .. tv .. '}', msg)
end
local nodes = {}
if tt == 'node' then
  nodes[tv] = true
elseif tt == 'client' then
  local n = redis.call('HGET', p .. 'c:' .. tv, 'node')
  if n then nodes[n] = true end
else
  local h = redis.call('HGETALL', p .. 'u:' .. tv)
  for i = 2, #h, 2 do nodes[h[i]] = true end
end
local sent = 0
for n in pairs(nodes) do
  if n ~= self and redis.call('EXISTS', p .. 'node:' .. n) == 1 then
    redis.call('SPUBLISH', p .. 'n:' .. n, msg)
    sent = sent + 1
  end
end
return sent
`

/** Presence list. KEYS: presence hash. ARGV: prefix. Entries of live nodes only (JSON). */
export const PRESENCE = `
local h = redis.call('HGETALL', KEYS[1])
local alive, out = {}, {}
for i = 1, #h, 2 do
  local node = cjson.decode(h[i + 1]).node
  if alive[node] == nil then
    alive[node] = redis.call('EXISTS', ARGV[1] .. 'node:' .. node) == 1
  end
  if alive[node] then out[#out + 1] = h[i + 1] end
end
return out
`

/** Add presence. KEYS: presence hash, node's set. ARGV: topic, client, entry JSON. */
export const PRESENCE_ADD = `
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], 'p\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
`

/** Remove presence. KEYS: presence hash. ARGV: prefix, topic, client. */
export const PRESENCE_REMOVE = `
local v = redis.call('HGET', KEYS[1], ARGV[3])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
local node = cjson.decode(v).node
redis.call('SREM', ARGV[1] .. 'nk:' .. node, 'p\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
return 1
`

/** Registry add. KEYS: client hash, node's set. ARGV: prefix, client, node, user or ''. */
export const REGISTRY_ADD = `
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'node', ARGV[3], 'user', ARGV[4])
  redis.call('HSET', ARGV[1] .. 'u:' .. ARGV[4], ARGV[2], ARGV[3])
else
  redis.call('HSET', KEYS[1], 'node', ARGV[3])
end
redis.call('SADD', KEYS[2], 'c\\n' .. ARGV[2])
`

/** Registry remove. KEYS: client hash. ARGV: prefix, client. */
export const REGISTRY_REMOVE = `
local e = redis.call('HMGET', KEYS[1], 'node', 'user')
if not e[1] then return 0 end
redis.call('DEL', KEYS[1])
if e[2] then redis.call('HDEL', ARGV[1] .. 'u:' .. e[2], ARGV[2]) end
redis.call('SREM', ARGV[1] .. 'nk:' .. e[1], 'c\\n' .. ARGV[2])
return 1
`

/** Locate. ARGV: prefix, 'client' or 'user', id. Connections on live nodes. */
export const LOCATE = `
local p = ARGV[1]
if ARGV[2] == 'client' then
  local n = redis.call('HGET', p .. 'c:' .. ARGV[3], 'node')
  if n and redis.call('EXISTS', p .. 'node:' .. n) == 1 then return 1 end
  return 0
end
local h = redis.call('HGETALL', p .. 'u:' .. ARGV[3])
local alive, count = {}, 0
for i = 2, #h, 2 do
  local n = h[i]
  if alive[n] == nil then alive[n] = redis.call('EXISTS', p .. 'node:' .. n) == 1 end
  if alive[n] then count = count + 1 end
end
return count
`

/**
 * Heartbeat. ARGV: prefix, node, info, ttl, patterns… Refreshes the node's key, its entry in
 * `nodes` and its pattern interests; returns 1 if the node key still existed (0: it expired
 * or Redis lost it, so the node must re-register what it owns).
 */
export const HEARTBEAT = `${COMMON}
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
local now = now_ms()
local existed = redis.call('EXISTS', p .. 'node:' .. node)
redis.call('SET', p .. 'node:' .. node, ARGV[3], 'PX', ttl)
redis.call('ZADD', p .. 'nodes', now + ttl, node)
for i = 5, #ARGV do redis.call('ZADD', p .. 'patterns', now + ttl, node .. ' ' .. ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', p .. 'patterns', '-inf', now)
return existed
`

/**
 * Sweep dead nodes. ARGV: prefix, node to drop now (or ''). Drops what nodes whose key
 * expired owned (presence and registry entries); a few nodes per call. Returns the count.
 */
export const SWEEP = `${COMMON}
local p = ARGV[1]
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', now, 'LIMIT', 0, 10)
if ARGV[2] ~= '' then
  redis.call('DEL', p .. 'node:' .. ARGV[2])
  dead[#dead + 1] = ARGV[2]
end
local swept = 0
for _, node in ipairs(dead) do
  if redis.call('EXISTS', p .. 'node:' .. node) == 0 then
    local set = p .. 'nk:' .. node
    for _, m in ipairs(redis.call('SMEMBERS', set)) do
      local kind, a, b = string.match(m, '^(%a)\\n([^\\n]*)\\n?(.*)$')
      if kind == 'p' then
        local key = p .. '{' .. a .. '}:pr'
        local v = redis.call('HGET', key, b)
        if v and cjson.decode(v).node == node then redis.call('HDEL', key, b) end
      elseif kind == 'k' then
        -- A publish claim the node never settled: let a retry elsewhere publish.
        local key = p .. 'k:' .. a
        if redis.call('GET', key) == 'pending' then redis.call('DEL', key) end
      elseif kind == 'c' then
        local key = p .. 'c:' .. a
        local e = redis.call('HMGET', key, 'node', 'user')
        if e[1] == node then
          redis.call('DEL', key)
          if e[2] then redis.call('HDEL', p .. 'u:' .. e[2], a) end
        end
      end
    end
    redis.call('DEL', set)
    redis.call('ZREM', p .. 'nodes', node)
    swept = swept + 1
  end
end
return swept
`

/**
 * Idempotency claim. KEYS: claim key, node's set. ARGV: ttl, key. The first claimer gets nil;
 * a pending claim is owned by its node, so one that dies with it is released by the sweep.
 */
export const CLAIM = `
local prev = redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[1], 'GET')
if not prev then redis.call('SADD', KEYS[2], 'k\\n' .. ARGV[2]) end
return prev
`

/** Release a claim still pending (its publish did not run). KEYS: claim key, node's set. ARGV: key. */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == 'pending' then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], 'k\\n' .. ARGV[1])
`
