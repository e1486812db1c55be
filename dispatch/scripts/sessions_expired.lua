-- Close the sessions whose lease ran out: their process died without closing them. Their
-- unfinished jobs are cancelled as for a closed session (close_session in _lib.lua), so nodes
-- stop working for a browser that is gone.
-- ARGV: prefix, max count, history s, ending json, the longest a job can last (ms)
-- Returns {session ids, flat list as session_close.lua returns for their jobs}.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', k('sessions'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local cancelled = {}
for _, session_id in ipairs(expired) do
  close_session(session_id, tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), now, cancelled)
end
return {expired, cancelled}
