-- Close the sessions whose lease ran out: their process died without closing them. Their
-- unfinished jobs are cancelled and they leave their rooms, as for a closed session
-- (close_session in _lib.lua), so nodes stop working for a browser that is gone and no room
-- keeps a ghost member.
-- ARGV: prefix, max count, history s, ending json, the longest a job can last (ms)
-- Returns {session ids, flat list as session_close.lua returns for their jobs, rooms to tell}.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', k('sessions'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local cancelled, rooms = {}, {}
for _, session_id in ipairs(expired) do
  close_session(session_id, tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), now, cancelled, rooms)
end
return {expired, cancelled, rooms}
