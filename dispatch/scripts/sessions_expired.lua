-- Forget sessions whose lease ran out: their process died without closing them. Their jobs
-- still in flight end as any job does (a result goes nowhere; a timeout moves it on).
-- ARGV: prefix, max count. Returns the session ids forgotten.
local expired = redis.call('ZRANGEBYSCORE', k('sessions'), '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
for _, session_id in ipairs(expired) do
  redis.call('ZREM', k('sessions'), session_id)
  redis.call('DEL', k('session', session_id))
end
return expired
