-- A session ends: its unfinished jobs are cancelled (slots released, stories closed). They are
-- found in the session's job index, which job_submit.lua writes as it places a job, so a job
-- placed while its session was closing (its consumer never heard of it) is cancelled too.
-- ARGV: prefix, session_id, history s, ending json, the longest a job can last (ms)
-- Returns a flat list: job_id, node channel, trace_id, channel of a draining node this left
-- idle or '', for each job that was still running.
local session_id = ARGV[2]
local now = now_ms()
local cancelled = {}
local recent = redis.call('ZRANGEBYSCORE', k('session', session_id, 'jobs'), now - tonumber(ARGV[5]), '+inf')
for _, job_id in ipairs(recent) do
  local jkey = k('job', job_id)
  local j = redis.call('HMGET', jkey, 'node', 'session', 'trace')
  if j[1] and j[2] == session_id then
    local drained = release(j[1], job_id)
    redis.call('DEL', jkey)
    end_story(job_id, ARGV[4], tonumber(ARGV[3]), now)
    redis.call('HINCRBY', k('metrics'), 'jobs_cancelled', 1)
    local channel = ''
    if j[1] ~= '' then channel = redis.call('HGET', k('node', j[1]), 'channel') or '' end
    cancelled[#cancelled + 1] = job_id
    cancelled[#cancelled + 1] = channel
    cancelled[#cancelled + 1] = j[3] or ''
    cancelled[#cancelled + 1] = drained
  end
end
redis.call('DEL', k('session', session_id))
redis.call('ZREM', k('sessions'), session_id)
return cancelled
