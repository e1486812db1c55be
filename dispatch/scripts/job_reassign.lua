-- Move a job on from its current attempt: after a timeout, a lost node, a failed result, or
-- (for a job waiting for a node) to try again. The next attempt goes to a node of the route
-- that has not had the job; when attempts are spent, or no such node turns up within the
-- dispatch wait, the job ends with its last attempt's error.
-- ARGV: prefix, job_id, reason (timeout|lost|failed|retry|expire), seed, expected attempt ('' any),
--       expected node ('' any), attempt timeout ms, max attempts, error code of this attempt,
--       history s, dispatch wait ms, model block s (MODEL_NOT_AVAILABLE) or '0', node's message,
--       failures in a row that eject a node (0: never), first ejection ms, longest ejection ms
-- Returns {'gone'} | {'stale'} (someone else moved it, or not the current node's)
--   | {'moved', node, node channel, attempt, body, old channel, drained channel}
--   | {'waiting', old channel, drained channel}
--   | {'ended', session channel, session_id, utterance_index, trace_id, cut ms, code, old channel,
--      drained channel, now, node's message}
local job_id, reason = ARGV[2], ARGV[3]
local jkey = k('job', job_id)
local j = redis.call('HMGET', jkey, 'node', 'attempt', 'tried', 'need', 'auto_pool', 'session', 'schan',
  'trace', 'utt', 'cut_ms', 'body', 'pool', 'last_error', 'wait_until', 'last_message', 'turn', 'tenant')
if not j[1] then return {'gone'} end
if ARGV[5] ~= '' and j[2] ~= ARGV[5] then return {'stale'} end
if ARGV[6] ~= '' and j[1] ~= ARGV[6] then return {'stale'} end
local now = now_ms()
local old_node, attempt = j[1], tonumber(j[2])
local old_channel, drained = '', ''
local code = j[13] or 'JOB_TIMEOUT'
local message = j[15] or ''
if reason ~= 'retry' then
  code, message = ARGV[9], ARGV[13] or ''
  if old_node ~= '' then
    old_channel = redis.call('HGET', k('node', old_node), 'channel') or ''
    drained = release(old_node, job_id)
    if tonumber(ARGV[12]) > 0 then
      redis.call('HSET', k('node', old_node), 'block:' .. j[12], now + tonumber(ARGV[12]) * 1000)
    end
    story_append(job_id, 'events', {at_ms = now, event = reason, node = old_node, attempt = attempt, code = code})
    -- the dashboard's per-node count of attempts that failed or timed out there
    if (reason == 'failed' or reason == 'timeout') and redis.call('EXISTS', k('node', old_node)) == 1 then
      redis.call('HINCRBY', k('node', old_node), 'jobs_failed', 1)
      if reason == 'timeout' or code ~= 'MODEL_NOT_AVAILABLE' then
        local out = node_failed(old_node, reason == 'timeout' and 'timeout' or 'error', code, now,
          tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]))
        if out then
          story_append(job_id, 'events', {at_ms = now, event = out.ejected and 'ejected' or 'not_ejected',
            node = old_node, until_ms = out.ejected, pool = out.refused})
        end
      end
    end
  end
end

local function finish()
  redis.call('DEL', jkey)
  redis.call('ZREM', k('deadlines'), job_id)
  end_story(job_id, cjson.encode({kind = 'error', code = code, message = message}), tonumber(ARGV[10]), now)
  redis.call('HINCRBY', k('metrics'), 'jobs_error', 1)
  tenant_job_ended(j[17], 'error', 0, now)
  return {'ended', j[7], j[6], j[9], j[8], j[10], code, old_channel, drained, now, message}
end

if reason == 'expire' or (reason ~= 'retry' and attempt >= tonumber(ARGV[8])) then return finish() end
local wait_until = tonumber(j[14])
if reason ~= 'retry' then wait_until = now + tonumber(ARGV[11]) end
if reason == 'retry' and now >= wait_until then return finish() end

rand_seed(ARGV[4])
local route = tenant_route(j[4], j[5], j[17])
local node, pool, strategy, looked = dispatch_on(route, split(j[3]), j[6], job_id, now)
if not node then
  redis.call('HSET', jkey, 'node', '', 'state', 'waiting', 'last_error', code, 'last_message', message,
    'wait_until', wait_until)
  redis.call('ZADD', k('deadlines'), math.min(now + 250, wait_until), job_id)
  return {'waiting', old_channel, drained}
end
attempt = attempt + 1
redis.call('HSET', jkey, 'node', node, 'attempt', attempt, 'tried', j[3] .. ',' .. node, 'pool', pool,
  'dispatched_ms', now, 'state', 'assigned', 'last_error', code, 'last_message', message)
redis.call('ZADD', k('deadlines'), now + tonumber(ARGV[7]), job_id)
redis.call('HINCRBY', k('metrics'), 'reassignments', 1)
-- the turn goes on where its piece now is (unless a later piece has moved it already)
if j[16] and redis.call('GET', k('turn', j[6], j[16])) == string.match(j[3], '([^,]+)$') then
  redis.call('SET', k('turn', j[6], j[16]), node, 'KEEPTTL')
end
story_append(job_id, 'attempts', {attempt = attempt, pool = pool, strategy = strategy, node = node, at_ms = now, looked = looked})
local node_channel = redis.call('HGET', k('node', node), 'channel')
return {'moved', node, node_channel, attempt, j[11], old_channel, drained}
