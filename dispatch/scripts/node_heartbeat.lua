-- A heartbeat: refresh the lease, store the reported load, and note capability fields that
-- differ from the stored ones (they wait in `pending`); say when the node is due a re-pool.
-- ARGV: prefix, node_id, channel, load json, lease ms, re-pool window ms,
--       then field, canonical json pairs.
-- Returns 'ok' | 'changed' (a change waits and the window since the node's last re-pool has
-- passed: the caller re-pools it now) | 'replaced' (another socket owns the id) | 'offline'
-- | 'revoked'.
local node_id, channel = ARGV[2], ARGV[3]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'channel', 'token')
if not v[1] or v[1] == 'offline' then return 'offline' end
if v[2] ~= channel then return 'replaced' end
if v[3] ~= '' and redis.call('ZSCORE', k('revoked'), v[3]) then return 'revoked' end
local now = now_ms()
redis.call('HSET', nkey, 'load', ARGV[4], 'last_seen_ms', now)
redis.call('ZADD', k('leases'), 'XX', now + tonumber(ARGV[5]), node_id)
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if note_pending(nkey, fields) and repool_claim(nkey, tonumber(ARGV[6]), now) then return 'changed' end
return 'ok'
