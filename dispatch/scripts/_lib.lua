-- Shared by every script: prepended to each one when it is loaded (dispatch/store.py).
-- ARGV[1] is always the key prefix; key names mirror dispatch/keys.py.
local P = ARGV[1]
local function k(...)
  return P .. ':' .. table.concat({...}, ':')
end

-- The Redis server's clock, in ms: deadlines and leases never depend on a process's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Park-Miller generator seeded by the caller: math.random is seeded alike on every call before
-- Redis 7, so it would pick the same "random" node each time.
local seed = 1
local function rand_seed(s)
  seed = (tonumber(s) % 2147483646) + 1
end
local function rand_int(n)
  seed = (seed * 16807) % 2147483647
  return (seed % n) + 1
end

local function shuffle(list)
  for i = #list, 2, -1 do
    local j = rand_int(i)
    list[i], list[j] = list[j], list[i]
  end
  return list
end

local function split(text)
  local out = {}
  if text then
    for item in string.gmatch(text, '[^,]+') do out[item] = true end
  end
  return out
end

local function decode_list(raw)
  if not raw or raw == '' then return {} end
  return cjson.decode(raw)
end

-- What a connected node's status is, from its pools and the drain flag.
local function live_status(node_id, pools)
  if redis.call('SISMEMBER', k('drained'), node_id) == 1 then return 'draining' end
  if #pools > 0 then return 'ready' end
  return 'registering'
end

-- Move a node between pool sets: out of the old pools it leaves, into every new one when
-- ready. Automatic pools that have members are indexed by name in `auto_pools` (score 0, so
-- the admin pages them in order): a pool enters it with its first member, leaves with its last.
local function set_membership(node_id, old_pools, new_pools, status)
  local kept = {}
  if status == 'ready' then
    for _, name in ipairs(new_pools) do kept[name] = true end
  end
  for _, name in ipairs(old_pools) do
    if not kept[name] then
      local pkey = k('pool', name)
      if redis.call('SREM', pkey, node_id) == 1 and string.sub(name, 1, 5) == 'auto:'
          and redis.call('EXISTS', pkey) == 0 then
        redis.call('ZREM', k('auto_pools'), name)
      end
    end
  end
  if status == 'ready' then
    local joined = {}  -- one ZADD for all: a member already there costs a lookup, not a call
    for _, name in ipairs(new_pools) do
      if redis.call('SADD', k('pool', name), node_id) == 1 and string.sub(name, 1, 5) == 'auto:' then
        joined[#joined + 1] = 0
        joined[#joined + 1] = name
        if #joined >= 1000 then
          redis.call('ZADD', k('auto_pools'), unpack(joined))
          joined = {}
        end
      end
    end
    if #joined > 0 then redis.call('ZADD', k('auto_pools'), unpack(joined)) end
  end
end

-- A node leaves every pool and goes offline, its record kept `keep` s (a socket closed, or its
-- lease ran out). Its job ids, which move on.
local function take_offline(node_id, pools_raw, now, keep)
  local nkey = k('node', node_id)
  set_membership(node_id, decode_list(pools_raw), {}, 'offline')
  redis.call('HSET', nkey, 'status', 'offline', 'offline_ms', now)
  redis.call('EXPIRE', nkey, keep)
  redis.call('EXPIRE', k('node', node_id, 'times'), keep)
  redis.call('ZREM', k('leases'), node_id)
  return redis.call('SMEMBERS', k('node', node_id, 'jobs'))
end

local function slots_for(node_id, requested)
  local override = redis.call('HGET', k('slots'), node_id)
  return tonumber(override) or tonumber(requested)
end

-- Free slots of a node for a pool: 0 unless it is ready and not blocked from that pool
-- (a MODEL_NOT_AVAILABLE failure blocks it for a while: field block:<pool> = until ms).
-- Second value: whether the node is ejected (eject_until in the future) after failures.
local function free_slots(node_id, pool, now)
  local v = redis.call('HMGET', k('node', node_id), 'status', 'slots', 'used', 'block:' .. pool, 'eject_until')
  if v[1] ~= 'ready' then return 0, false end
  if v[4] and tonumber(v[4]) > now then return 0, false end
  return (tonumber(v[2]) or 0) - (tonumber(v[3]) or 0), (v[5] and tonumber(v[5]) > now) or false
end

local SAMPLE = 16
local ROUNDS = 4

-- Pick a node of one pool by its strategy, skipping `tried`. Cost is bounded by
-- 1 + ROUNDS x SAMPLE whatever the pool's size. Returns node id (or nil) and the candidates seen.
-- An ejected node is skipped (seen as `id=ejected`) unless every member seen is ejected and
-- untried: a pool whose other members left meanwhile is not left without a node.
local function pick(pool, strategy, tried, session_id, now)
  local pkey = k('pool', pool)
  local size = redis.call('SCARD', pkey)
  local seen = {}
  local spare, others = nil, false
  if size == 0 then return nil, seen end
  if strategy == 'sticky' and session_id ~= '' then
    local last = redis.call('HGET', k('session', session_id), 'last_node')
    if last and not tried[last] and redis.call('SISMEMBER', pkey, last) == 1 then
      local free, ejected = free_slots(last, pool, now)
      if ejected then
        seen[#seen + 1] = last .. '=ejected'
        if free > 0 then spare = last end
      else
        seen[#seen + 1] = last .. '=' .. free
        if free > 0 then return last, seen end
        others = true
      end
    end
  end
  local whole = size <= SAMPLE
  -- Strategies that take the first free node start with one member: SRANDMEMBER's cost grows
  -- with its count, and on a big fleet each member drawn is a cache miss (bench/, Redis 6.2,
  -- 10,000 members: 37 µs for 16, 4.6 µs for 2, 2.7 µs for one). While slots are free, one does.
  local single = not whole and strategy ~= 'least_loaded'
  for round = 1, (whole and 1 or ROUNDS) + (single and 1 or 0) do
    local sample
    if whole then
      sample = redis.call('SMEMBERS', pkey)
    elseif single and round == 1 then
      sample = {redis.call('SRANDMEMBER', pkey)}
    else
      sample = redis.call('SRANDMEMBER', pkey, SAMPLE)
    end
    shuffle(sample)
    local best, best_free = nil, 0
    for _, id in ipairs(sample) do
      if tried[id] then
        others = true
      else
        local free, ejected = free_slots(id, pool, now)
        if ejected then
          seen[#seen + 1] = id .. '=ejected'
          if free > 0 and not spare then spare = id end
        else
          others = true
          seen[#seen + 1] = id .. '=' .. free
          if free > best_free then
            best, best_free = id, free
            if strategy ~= 'least_loaded' then break end
          end
        end
      end
    end
    if best then return best, seen end
  end
  if spare and not others then return spare, seen end
  return nil, seen
end

-- Turn affinity: the node holding a turn's latest piece takes the next one when it is in a
-- pool of the route (walked in order), not ejected, with a free slot there. Returns that
-- route entry or nil, and how the node was seen (`id=free`, `id=ejected`, `id=gone`).
local function turn_entry(route, node_id, now)
  local state = node_id .. '=gone'
  for _, entry in ipairs(route) do
    if redis.call('SISMEMBER', k('pool', entry[1]), node_id) == 1 then
      local free, ejected = free_slots(node_id, entry[1], now)
      if ejected then return nil, node_id .. '=ejected' end
      state = node_id .. '=' .. free
      if free > 0 then return entry, state end
    end
  end
  return nil, state
end

-- Take one slot of a node for a job.
local function reserve(node_id, job_id)
  local nkey = k('node', node_id)
  local used = redis.call('HINCRBY', nkey, 'used', 1)
  if used >= (tonumber(redis.call('HGET', nkey, 'slots')) or 0) then
    redis.call('HINCRBY', k('metrics'), 'node_full', 1)
  end
  redis.call('SADD', k('node', node_id, 'jobs'), job_id)
end

-- Give back the slot a job's current attempt holds. Returns the node's channel when this
-- leaves a draining node idle (it is then told `drained`), else ''.
local function release(node_id, job_id)
  redis.call('ZREM', k('deadlines'), job_id)
  if node_id == '' or redis.call('SREM', k('node', node_id, 'jobs'), job_id) == 0 then return '' end
  local nkey = k('node', node_id)
  if redis.call('EXISTS', nkey) == 0 then return '' end
  local used = redis.call('HINCRBY', nkey, 'used', -1)
  if used < 0 then
    redis.call('HSET', nkey, 'used', 0)
    used = 0
  end
  if used == 0 and redis.call('HGET', nkey, 'status') == 'draining' then
    return redis.call('HGET', nkey, 'channel') or ''
  end
  return ''
end

-- Walk a route (list of {pool, strategy}) and reserve a slot on the first pool that has one.
local function dispatch_on(route, tried, session_id, job_id, now)
  local looked = {}
  for _, entry in ipairs(route) do
    local node, seen = pick(entry[1], entry[2], tried, session_id, now)
    looked[#looked + 1] = {pool = entry[1], candidates = seen}
    if node then
      reserve(node, job_id)
      return node, entry[1], entry[2], looked
    end
  end
  return nil, nil, nil, looked
end

-- The session's route: admin pools covering the need, then its automatic pool when on.
local function route_of(need, auto_pool)
  local v = redis.call('HMGET', k('routes'), need)
  local route = decode_list(v[1])
  if redis.call('HGET', k('config'), 'auto') == '1' then
    route[#route + 1] = {auto_pool, 'random'}
  end
  return route
end

-- Close a job's story: the ending, kept for the history window.
local function end_story(job_id, ending, history_s, now)
  local skey = k('story', job_id)
  redis.call('HSET', skey, 'ending', ending, 'ended_ms', now)
  redis.call('EXPIRE', skey, history_s)
end

-- Append one entry to a JSON list field of the story.
local function story_append(job_id, field, entry)
  local skey = k('story', job_id)
  local list = decode_list(redis.call('HGET', skey, field))
  list[#list + 1] = entry
  redis.call('HSET', skey, field, cjson.encode(list))
end

-- Observations for the dashboard and /metrics (not state): a first attempt's dispatch latency
-- (cut → slot reserved, ms) in the fleet histogram and its pool's recent list, and the jobs
-- placed per minute. Bucket bounds mirror dispatch/metrics.py DISPATCH_BUCKETS_MS.
local DISPATCH_LE_MS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}
local function observe_dispatch(pool, latency, now)
  local le = 'inf'
  for _, bound in ipairs(DISPATCH_LE_MS) do
    if latency <= bound then
      le = tostring(bound)
      break
    end
  end
  redis.call('HINCRBY', k('metrics'), 'dispatch_le:' .. le, 1)
  redis.call('HINCRBY', k('metrics'), 'dispatch_sum_ms', latency)
  local mkey = k('minute', math.floor(now / 60000))
  redis.call('HINCRBY', mkey, 'placed', 1)
  redis.call('HINCRBY', mkey, 'placed:' .. pool, 1)
  redis.call('EXPIRE', mkey, 1200)
  local lkey = k('latency', pool)
  redis.call('LPUSH', lkey, latency)
  redis.call('LTRIM', lkey, 0, 99)
  redis.call('EXPIRE', lkey, 900)
end

-- Index a job under its session, and the session under its trace id, for the job lookup;
-- both kept `keep_s` after the last write (entries older than that are trimmed).
local function index_job(session_id, trace_id, job_id, now, keep_s)
  local ikey = k('session', session_id, 'jobs')
  redis.call('ZADD', ikey, now, job_id)
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', now - keep_s * 1000)
  redis.call('EXPIRE', ikey, keep_s)
  local tkey = k('trace', trace_id)
  redis.call('SADD', tkey, session_id)
  redis.call('EXPIRE', tkey, keep_s)
end

-- A member leaves its room (room_leave.lua, or its session ends): out of the member list, its
-- session no longer names the room, the others forget their raw voice preference about it, and
-- the last one out deletes the room. When members remain, appends {code, their entries...} to
-- `out` (they are told the new list). Returns false when it was not a member.
local function room_drop(code, session_id, out)
  local mkey = k('room', code, 'members')
  if redis.call('HDEL', mkey, session_id) == 0 then return false end
  local skey = k('session', session_id)
  if redis.call('HGET', skey, 'room') == code then redis.call('HDEL', skey, 'room') end
  redis.call('HINCRBY', k('metrics'), 'room_members', -1)
  local left = redis.call('HGETALL', mkey)
  if #left == 0 then
    redis.call('DEL', k('room', code), mkey)
    redis.call('ZREM', k('rooms'), code)
    redis.call('HINCRBY', k('metrics'), 'rooms', -1)
    return true
  end
  local told = {code}
  for i = 1, #left, 2 do
    local entry = cjson.decode(left[i + 1])
    if entry.raw_voice_preferences[session_id] ~= nil then
      entry.raw_voice_preferences[session_id] = nil
      left[i + 1] = cjson.encode(entry)
      redis.call('HSET', mkey, left[i], left[i + 1])
    end
    told[#told + 1] = left[i + 1]
  end
  out[#out + 1] = told
  return true
end

-- Tenants (docs/protocol.md, tenants). Their records are configuration (tenants_publish.lua);
-- quota and usage counters change only here, in the scripts that open sessions and place or end jobs.
local function tenant_record(name)
  if not name or name == '' then return nil end
  local raw = redis.call('HGET', k('tenants'), name)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function utc_day(now)
  return math.floor(now / 86400000)
end

-- Add n to one of a tenant's usage counters of the day (the worker rolls them into the database).
local function count_usage(tenant, field, n, now)
  if not tenant or tenant == '' or not n or n == 0 then return end
  redis.call('HINCRBY', k('usage', utc_day(now)), tenant .. ':' .. field, n)
end

-- A tenant's job ended (result|missing|error|cancelled): its usage of the day and its /metrics counter.
local ENDED_FIELD = {result = 'results', missing = 'missing', error = 'errors', cancelled = 'cancelled'}
local function tenant_job_ended(tenant, outcome, audio_ms, now)
  if not tenant or tenant == '' then return end
  count_usage(tenant, ENDED_FIELD[outcome], 1, now)
  redis.call('HINCRBY', k('metrics'), 'tenant_jobs:' .. tenant .. ':' .. outcome, 1)
  if outcome == 'result' then count_usage(tenant, 'audio_ms_result', tonumber(audio_ms), now) end
end

-- A tenant's route: its own (field `tenant|need`, published when pools are restricted to it)
-- or everyone's; before each pool, that pool's nodes whose token belongs to the tenant
-- (set `pool@tenant`), when it has any. Nodes of a tenant sit only in such sets.
local function tenant_route(need, auto_pool, tenant)
  if not tenant or tenant == '' then return route_of(need, auto_pool) end
  local v = redis.call('HMGET', k('routes'), tenant .. '|' .. need, need)
  local shared = decode_list(v[1] or v[2])
  if redis.call('HGET', k('config'), 'auto') == '1' then
    shared[#shared + 1] = {auto_pool, 'random'}
  end
  local route = {}
  for _, entry in ipairs(shared) do
    local own = entry[1] .. '@' .. tenant
    if redis.call('EXISTS', k('pool', own)) == 1 then route[#route + 1] = {own, entry[2]} end
    route[#route + 1] = entry
  end
  return route
end

-- A session ends: cancel its unfinished jobs (slots released, records deleted, stories closed
-- with `ending`), appending job_id, node channel, trace_id and the channel of a draining node
-- this left idle (or '') to `out` for each. The jobs are found in the session's job index, which
-- job_submit.lua writes as it places a job, so a job placed while its session was closing (its
-- consumer never heard of it) is cancelled too; entries older than `max_age_ms` cannot be running.
-- A member of a room leaves it (room_drop: the others to tell are appended to `rooms_out`).
local function close_session(session_id, history_s, ending, max_age_ms, now, out, rooms_out)
  local recent = redis.call('ZRANGEBYSCORE', k('session', session_id, 'jobs'), now - max_age_ms, '+inf')
  for _, job_id in ipairs(recent) do
    local jkey = k('job', job_id)
    local j = redis.call('HMGET', jkey, 'node', 'session', 'trace', 'tenant')
    if j[1] and j[2] == session_id then
      tenant_job_ended(j[4], 'cancelled', 0, now)
      local drained = release(j[1], job_id)
      redis.call('DEL', jkey)
      end_story(job_id, ending, history_s, now)
      redis.call('HINCRBY', k('metrics'), 'jobs_cancelled', 1)
      local channel = ''
      if j[1] ~= '' then channel = redis.call('HGET', k('node', j[1]), 'channel') or '' end
      out[#out + 1] = job_id
      out[#out + 1] = channel
      out[#out + 1] = j[3] or ''
      out[#out + 1] = drained
    end
  end
  local room = redis.call('HGET', k('session', session_id), 'room')
  if room then room_drop(room, session_id, rooms_out or {}) end
  local tenant = redis.call('HGET', k('session', session_id), 'tenant')
  if tenant then redis.call('ZREM', k('tenant', tenant, 'sessions'), session_id) end
  redis.call('DEL', k('session', session_id))
  redis.call('ZREM', k('sessions'), session_id)
end

-- A node's own frames move its pool memberships at most once per window (a heartbeat interval).
-- Capability fields (flat field, raw json pairs) that differ from the stored ones wait in the
-- node's `pending` (a JSON object, field -> raw json) for its next re-pool; a field sent equal to
-- the stored one drops its pending change, so the latest word wins. True when a change waits.
local function note_pending(nkey, fields)
  local raw = redis.call('HGET', nkey, 'pending')
  local pending = cjson.decode(raw or '{}')
  for i = 1, #fields, 2 do
    if redis.call('HGET', nkey, fields[i]) == fields[i + 1] then
      pending[fields[i]] = nil
    else
      pending[fields[i]] = fields[i + 1]
    end
  end
  if next(pending) == nil then
    if raw then redis.call('HDEL', nkey, 'pending') end
    return false
  end
  redis.call('HSET', nkey, 'pending', cjson.encode(pending))
  return true
end

-- Take the node's re-pool for `now` when its window has passed since the last one.
local function repool_claim(nkey, window_ms, now)
  if now < (tonumber(redis.call('HGET', nkey, 'repool_ms')) or 0) + window_ms then return false end
  redis.call('HSET', nkey, 'repool_ms', now)
  return true
end

-- Outlier ejection, after an attempt on a node failed (an error other than MODEL_NOT_AVAILABLE,
-- or a timeout): the `after`-th failure in a row ejects the node for base_ms, doubled on each
-- ejection since its last success, at most max_ms. Never more than half of the ready members
-- of any of its pools at once (checked here, over its pools, with a per-pool zset of ejected
-- members: ejections are rare, jobs are not). Returns nil, {ejected = until ms, span = ms},
-- or {refused = pool}.
local function node_failed(node_id, reason, code, now, after, base_ms, max_ms)
  local nkey = k('node', node_id)
  if not after or after < 1 or redis.call('EXISTS', nkey) == 0 then return nil end
  if redis.call('HINCRBY', nkey, 'fails_in_row', 1) < after then return nil end
  redis.call('HSET', nkey, 'fails_in_row', 0)
  local v = redis.call('HMGET', nkey, 'pools', 'eject_count', 'eject_until')
  if v[3] and tonumber(v[3]) > now then return nil end  -- already out (jobs it held before)
  local pools = decode_list(v[1])
  for _, name in ipairs(pools) do
    local out = redis.call('ZCOUNT', k('ejected', name), '(' .. now, '+inf')
    if (out + 1) * 2 > redis.call('SCARD', k('pool', name)) then return {refused = name} end
  end
  local count = (tonumber(v[2]) or 0) + 1
  local span = math.floor(math.min(base_ms * 2 ^ math.min(count - 1, 30), max_ms))
  local until_ms = now + span
  for _, name in ipairs(pools) do
    -- entries past their time count no more; the set goes when its last ejection could end
    redis.call('ZADD', k('ejected', name), until_ms, node_id)
    redis.call('PEXPIRE', k('ejected', name), max_ms)
  end
  redis.call('HSET', nkey, 'eject_until', until_ms, 'eject_reason', reason, 'eject_code', code,
    'eject_count', count, 'ejected_ms', now)
  redis.call('HINCRBY', k('metrics'), 'ejections:' .. reason, 1)
  return {ejected = until_ms, span = span}
end

-- An attempt on a node succeeded: its run of failures ends, and (unless it is ejected now, a
-- job it held from before finishing) so does the doubling of its ejections.
local function node_succeeded(node_id, now)
  local nkey = k('node', node_id)
  local v = redis.call('HMGET', nkey, 'fails_in_row', 'eject_count', 'eject_until')
  if v[1] and v[1] ~= '0' then redis.call('HSET', nkey, 'fails_in_row', 0) end
  if v[2] and v[2] ~= '0' and not (v[3] and tonumber(v[3]) > now) then
    redis.call('HSET', nkey, 'eject_count', 0)
  end
end
