-- A heartbeat: refresh the lease, store the reported load, and tell whether the capability
-- fields it carries differ from the stored ones (the caller then recomputes pools).
-- ARGV: prefix, node_id, channel, load json, lease ms, then field, canonical json pairs.
-- Returns 'ok' | 'changed' | 'replaced' (another socket owns the id) | 'offline' | 'revoked'.
local node_id, channel = ARGV[2], ARGV[3]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'channel', 'token')
if not v[1] or v[1] == 'offline' then return 'offline' end
if v[2] ~= channel then return 'replaced' end
if v[3] ~= '' and redis.call('ZSCORE', k('revoked'), v[3]) then return 'revoked' end
local now = now_ms()
redis.call('HSET', nkey, 'load', ARGV[4], 'last_seen_ms', now)
redis.call('ZADD', k('leases'), 'XX', now + tonumber(ARGV[5]), node_id)
for i = 6, #ARGV, 2 do
  if redis.call('HGET', nkey, ARGV[i]) ~= ARGV[i + 1] then return 'changed' end
end
return 'ok'
