-- A session ends: its unfinished jobs are cancelled (slots released, stories closed).
-- ARGV: prefix, session_id, history s, ending json, then the session's job ids.
-- Returns a flat list: job_id, node channel, trace_id, channel of a draining node this left
-- idle or '', for each job that was still running.
local session_id = ARGV[2]
local now = now_ms()
local cancelled = {}
for i = 5, #ARGV do
  local job_id = ARGV[i]
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
