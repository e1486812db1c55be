-- A browser session opens: note its trace id and channel, and start its lease (its process
-- renews it: sessions_alive.lua; the worker forgets sessions whose lease ran out).
-- Its tenant's checks come first: a ticket's key still live, the tenant enabled, and a place
-- under its max_sessions (open sessions counted in a zset by lease, so those of a dead process
-- stop counting when their lease runs out, whoever closes them).
-- ARGV: prefix, session_id, trace_id, channel, job index keep s (the trace id → session index),
--       lease ms, tenant ('' none), key id ('' open mode), sub,
--       need ('zh>en', 'en~zh': the pool admin counts the sessions a change reroutes)
-- Returns 'ok' | 'dup' (another socket has that session id: make another)
--       | 'revoked' (the ticket's key is gone) | 'disabled' (the tenant is) | 'quota' (max_sessions).
local owner = redis.call('HGET', k('session', ARGV[2]), 'channel')
if owner and owner ~= ARGV[4] then return 'dup' end
local now = now_ms()
local tenant, key_id = ARGV[7] or '', ARGV[8] or ''
if tenant ~= '' then
  local record = tenant_record(tenant)
  if key_id ~= '' and (not record or redis.call('HEXISTS', k('tenant_keys'), key_id) == 0) then return 'revoked' end
  if record and record.enabled == false then return 'disabled' end
  local open = k('tenant', tenant, 'sessions')
  redis.call('ZREMRANGEBYSCORE', open, '-inf', now)
  if record and record.max_sessions and not redis.call('ZSCORE', open, ARGV[2])
      and redis.call('ZCARD', open) >= record.max_sessions then
    return 'quota'
  end
  redis.call('ZADD', open, now + tonumber(ARGV[6]), ARGV[2])
  count_usage(tenant, 'sessions', 1, now)
  if key_id ~= '' then redis.call('HSET', k('tenant_keys_used'), key_id, now) end
end
redis.call('HSET', k('session', ARGV[2]), 'trace', ARGV[3], 'channel', ARGV[4], 'opened_ms', now, 'need', ARGV[10] or '')
if tenant ~= '' then redis.call('HSET', k('session', ARGV[2]), 'tenant', tenant, 'key', key_id, 'sub', ARGV[9] or '') end
redis.call('EXPIRE', k('session', ARGV[2]), 86400)
redis.call('ZADD', k('sessions'), now + tonumber(ARGV[6]), ARGV[2])
redis.call('SADD', k('trace', ARGV[3]), ARGV[2])
redis.call('EXPIRE', k('trace', ARGV[3]), tonumber(ARGV[5]))
return 'ok'
