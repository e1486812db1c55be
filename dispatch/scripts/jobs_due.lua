-- Claim jobs whose current attempt is past its deadline (or that wait to be retried): each is
-- pushed out by a claim period, so one worker copy handles it; if that copy dies, the job
-- comes due again. ARGV: prefix, max count, claim ms. Returns job_id, attempt, state triples.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', k('deadlines'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, job_id in ipairs(due) do
  redis.call('ZADD', k('deadlines'), now + tonumber(ARGV[3]), job_id)
  local v = redis.call('HMGET', k('job', job_id), 'attempt', 'state')
  if v[1] then
    out[#out + 1] = job_id
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
  else
    redis.call('ZREM', k('deadlines'), job_id)
  end
end
return out
