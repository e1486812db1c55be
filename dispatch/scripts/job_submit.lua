-- Pick and reserve in one call: walk the session's route, take a slot on a node of the first
-- pool that has one (by that pool's strategy), record the job with its frame and its story.
-- A later piece of a turn goes to the node that holds the turn's latest piece while it can
-- take it (turn affinity); the pool strategies decide the rest.
-- ARGV: prefix, job_id, need, auto pool, seed, session_id, session channel, trace_id,
--       utterance_index, cut ms, job_assign body, attempt timeout ms, job index keep s,
--       turn_id, '1' when the turn goes on after this piece (a length cut), turn key TTL s,
--       tenant ('' none), audio ms, sub (the ticket's end user), session_init's tenant_id label
-- The tenant's audio_minutes_per_day is checked and counted here, with the placement.
-- Returns {'ok', node, node channel, pool, strategy} | {'none', first pool or ''} | {'dup'}
--       | {'quota'} (the utterance would take the tenant past its audio quota for the UTC day).
local job_id, need, session_id = ARGV[2], ARGV[3], ARGV[6]
local jkey, skey = k('job', job_id), k('story', job_id)
if redis.call('EXISTS', jkey) == 1 or redis.call('EXISTS', skey) == 1 then return {'dup'} end
rand_seed(ARGV[5])
local now = now_ms()
local tenant, audio_ms = ARGV[17] or '', tonumber(ARGV[18]) or 0
local quota = tenant_record(tenant)
quota = quota and quota.audio_ms_per_day
if quota and (tonumber(redis.call('HGET', k('usage', utc_day(now)), tenant .. ':audio_ms')) or 0) + audio_ms > quota then
  return {'quota'}
end
local route = tenant_route(need, ARGV[4], tenant)
local turn_key = k('turn', session_id, ARGV[14] or '')
local turn_node = ARGV[14] and ARGV[14] ~= '' and redis.call('GET', turn_key)
local node, pool, strategy, looked, turn_seen
if turn_node then
  local entry
  entry, turn_seen = turn_entry(route, turn_node, now)
  if entry then
    reserve(turn_node, job_id)
    node, pool, strategy, looked = turn_node, entry[1], 'affinity', {{pool = entry[1], candidates = {turn_seen}}}
  end
end
if not node then node, pool, strategy, looked = dispatch_on(route, {}, session_id, job_id, now) end
if not node then
  local first = ''
  if route[1] then first = route[1][1] end
  return {'none', first}
end
local node_channel = redis.call('HGET', k('node', node), 'channel')
redis.call('HSET', jkey,
  'session', session_id, 'schan', ARGV[7], 'trace', ARGV[8], 'utt', ARGV[9], 'need', need,
  'auto_pool', ARGV[4], 'node', node, 'attempt', 1, 'pool', pool, 'tried', node,
  'body', ARGV[11], 'cut_ms', ARGV[10], 'dispatched_ms', now, 'state', 'assigned',
  'tenant', tenant, 'audio_ms', audio_ms)
redis.call('ZADD', k('deadlines'), now + tonumber(ARGV[12]), job_id)
redis.call('HSET', k('session', session_id), 'last_node', node)
if ARGV[15] == '1' then
  redis.call('SET', turn_key, node, 'EX', tonumber(ARGV[16]))
  redis.call('HSET', jkey, 'turn', ARGV[14])
elseif turn_node then
  redis.call('DEL', turn_key)
end
local attempts = {{attempt = 1, pool = pool, strategy = strategy, node = node, at_ms = now, looked = looked,
  turn = turn_seen}}
redis.call('HSET', skey,
  'job_id', job_id, 'session', session_id, 'trace', ARGV[8], 'utt', ARGV[9], 'need', need,
  'route', cjson.encode(route), 'cut_ms', ARGV[10], 'attempts', cjson.encode(attempts),
  'tenant', tenant, 'sub', ARGV[19] or '', 'label', ARGV[20] or '', 'audio_ms', audio_ms)
redis.call('EXPIRE', skey, 86400)
observe_dispatch(pool, math.max(0, now - tonumber(ARGV[10])), now)
index_job(session_id, ARGV[8], job_id, now, tonumber(ARGV[13]))
if tenant ~= '' then
  count_usage(tenant, 'jobs', 1, now)
  count_usage(tenant, 'audio_ms', audio_ms, now)
  redis.call('HINCRBY', k('metrics'), 'tenant_audio_ms:' .. tenant, audio_ms)
end
return {'ok', node, node_channel, pool, strategy}
