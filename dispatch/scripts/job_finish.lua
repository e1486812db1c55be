-- A job ends: the first ending wins; the slot of its current attempt is released, the job
-- record (and its audio) deleted, its story closed.
-- ARGV: prefix, job_id, node_id that answered, outcome (result|missing|error), ending json,
--       history s, processing ms ('' if unknown)
-- Returns {'ended', session channel, session_id, utterance_index, trace_id, cut ms,
--          current node, its channel when another node answered (to cancel) or '', now ms,
--          channel of a draining node this left idle or ''}
--       | {'gone'} (already ended) | {'stranger'} (this node never had the job).
local job_id, node_id, outcome = ARGV[2], ARGV[3], ARGV[4]
local jkey = k('job', job_id)
local j = redis.call('HMGET', jkey, 'node', 'tried', 'schan', 'session', 'utt', 'trace', 'cut_ms', 'tenant', 'audio_ms')
if not j[1] then return {'gone'} end
if j[1] ~= node_id and not split(j[2])[node_id] then return {'stranger'} end
local drained = release(j[1], job_id)
local cancel_channel = ''
if j[1] ~= node_id and j[1] ~= '' then cancel_channel = redis.call('HGET', k('node', j[1]), 'channel') or '' end
redis.call('DEL', jkey)
local now = now_ms()
end_story(job_id, ARGV[5], tonumber(ARGV[6]), now)
redis.call('HINCRBY', k('metrics'), 'jobs_' .. outcome, 1)
tenant_job_ended(j[8], outcome, j[9], now)
local nkey = k('node', node_id)
if redis.call('EXISTS', nkey) == 1 then
  if outcome == 'error' then
    redis.call('HINCRBY', nkey, 'jobs_failed', 1)
  else
    redis.call('HINCRBY', nkey, 'jobs_done', 1)
    node_succeeded(node_id, now)
  end
  if ARGV[7] ~= '' then
    redis.call('LPUSH', k('node', node_id, 'times'), ARGV[7])
    redis.call('LTRIM', k('node', node_id, 'times'), 0, 99)
  end
end
return {'ended', j[3], j[4], j[5], j[6], j[7], j[1], cancel_channel, now, drained}
