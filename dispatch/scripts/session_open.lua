-- A browser session opens: note its trace id and channel, and start its lease (its process
-- renews it: sessions_alive.lua; the worker forgets sessions whose lease ran out).
-- ARGV: prefix, session_id, trace_id, channel, job index keep s (the trace id → session index),
--       lease ms, need ('zh>en', 'en~zh': the pool admin counts the sessions a change reroutes)
-- Returns 'ok' | 'dup' (another socket has that session id: make another).
local owner = redis.call('HGET', k('session', ARGV[2]), 'channel')
if owner and owner ~= ARGV[4] then return 'dup' end
local now = now_ms()
redis.call('HSET', k('session', ARGV[2]), 'trace', ARGV[3], 'channel', ARGV[4], 'opened_ms', now, 'need', ARGV[7])
redis.call('EXPIRE', k('session', ARGV[2]), 86400)
redis.call('ZADD', k('sessions'), now + tonumber(ARGV[6]), ARGV[2])
redis.call('SADD', k('trace', ARGV[3]), ARGV[2])
redis.call('EXPIRE', k('trace', ARGV[3]), tonumber(ARGV[5]))
return 'ok'
