-- A session ends: its unfinished jobs are cancelled and it leaves its room (close_session in
-- _lib.lua).
-- ARGV: prefix, session_id, history s, ending json, the longest a job can last (ms)
-- Returns {a flat list: job_id, node channel, trace_id, channel of a draining node this left
-- idle or '', for each job that was still running; the rooms whose other members are told:
-- {code, member entries...} each}.
local cancelled, rooms = {}, {}
close_session(ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), now_ms(), cancelled, rooms)
return {cancelled, rooms}
