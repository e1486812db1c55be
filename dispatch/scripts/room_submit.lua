-- Place one utterance of a room member in one call: one job per language group, each walking
-- its own route (pick and reserve as job_submit.lua does). A job whose route has no free node
-- now is recorded waiting (the worker retries it until the dispatch wait is over, then it ends
-- with NO_AVAILABLE_NODE), so a group without a node fails alone. An utterance is activity.
-- The speaker's tenant routes and pays for every job: its audio quota is checked for all of
-- them at once (each job counts the utterance's audio, as a job of its own session would).
-- ARGV: prefix, room code, session_id (the speaker), session channel, trace_id, utterance_index,
--       cut ms, seed, attempt timeout ms, job index keep s, dispatch wait ms, tenant ('' none),
--       audio ms, then for each job: job_id, group (language), need, auto pool, job_assign body
-- Returns {'ok', then for each job: job_id, node ('' when waiting), node channel, pool}
--   | {'gone'} (the speaker is not a member of the room) | {'dup'} (a job id is taken)
--   | {'quota'} (the jobs would take the tenant past its audio quota for the UTC day).
local code, session_id, trace, utt, cut_ms = ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7]
local tenant, audio_ms, FIRST = ARGV[12] or '', tonumber(ARGV[13]) or 0, 14
local mkey = k('room', code, 'members')
if redis.call('HEXISTS', mkey, session_id) == 0 then return {'gone'} end
for i = FIRST, #ARGV, 5 do
  if redis.call('EXISTS', k('job', ARGV[i])) == 1 or redis.call('EXISTS', k('story', ARGV[i])) == 1 then
    return {'dup'}
  end
end
rand_seed(ARGV[8])
local now = now_ms()
local quota = tenant_record(tenant)
quota = quota and quota.audio_ms_per_day
local jobs = math.floor((#ARGV - FIRST + 1) / 5)
if quota and (tonumber(redis.call('HGET', k('usage', utc_day(now)), tenant .. ':audio_ms')) or 0) + audio_ms * jobs > quota then
  return {'quota'}
end
local keep_s, wait_until = tonumber(ARGV[10]), now + tonumber(ARGV[11])
local room_id = redis.call('HGET', k('room', code), 'id')
redis.call('ZADD', k('rooms'), now, code)
local out = {'ok'}
for i = FIRST, #ARGV, 5 do
  local job_id, group, need, auto_pool, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local jkey = k('job', job_id)
  local route = tenant_route(need, auto_pool, tenant)
  local node, pool, strategy, looked = dispatch_on(route, {}, session_id, job_id, now)
  redis.call('HSET', jkey, 'session', session_id, 'schan', ARGV[4], 'trace', trace, 'utt', utt, 'need', need,
    'auto_pool', auto_pool, 'body', body, 'cut_ms', cut_ms, 'room', code, 'group', group,
    'tenant', tenant, 'audio_ms', audio_ms)
  local attempts = {}
  if node then
    redis.call('HSET', jkey, 'node', node, 'attempt', 1, 'pool', pool, 'tried', node, 'dispatched_ms', now,
      'state', 'assigned')
    redis.call('ZADD', k('deadlines'), now + tonumber(ARGV[9]), job_id)
    redis.call('HSET', k('session', session_id), 'last_node', node)
    attempts[1] = {attempt = 1, pool = pool, strategy = strategy, node = node, at_ms = now, looked = looked}
    observe_dispatch(pool, math.max(0, now - tonumber(cut_ms)), now)
    out[#out + 1] = job_id
    out[#out + 1] = node
    out[#out + 1] = redis.call('HGET', k('node', node), 'channel')
    out[#out + 1] = pool
  else
    -- job_reassign.lua's retry takes it from here: attempt 0 becomes 1 on the node it finds
    redis.call('HSET', jkey, 'node', '', 'attempt', 0, 'pool', '', 'tried', '', 'state', 'waiting',
      'last_error', 'NO_AVAILABLE_NODE', 'wait_until', wait_until)
    redis.call('ZADD', k('deadlines'), math.min(now + 250, wait_until), job_id)
    out[#out + 1] = job_id
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = route[1] and route[1][1] or ''
  end
  redis.call('HSET', k('story', job_id),
    'job_id', job_id, 'session', session_id, 'trace', trace, 'utt', utt, 'need', need,
    'route', cjson.encode(route), 'cut_ms', cut_ms, 'attempts', cjson.encode(attempts),
    'room', code, 'room_id', room_id or '', 'group', group, 'tenant', tenant, 'audio_ms', audio_ms)
  redis.call('EXPIRE', k('story', job_id), 86400)
  index_job(session_id, trace, job_id, now, keep_s)
  local rjobs = k('room', code, 'jobs')
  redis.call('ZADD', rjobs, now, job_id)
  redis.call('ZREMRANGEBYSCORE', rjobs, '-inf', now - keep_s * 1000)
  redis.call('EXPIRE', rjobs, keep_s)
  if tenant ~= '' then
    count_usage(tenant, 'jobs', 1, now)
    count_usage(tenant, 'audio_ms', audio_ms, now)
    redis.call('HINCRBY', k('metrics'), 'tenant_audio_ms:' .. tenant, audio_ms)
  end
end
return out
