-- Apply recomputed pools (and, after a capability change, the new capabilities) to one node,
-- only if neither its capabilities nor the config changed since they were read.
-- ARGV: prefix, node_id, capver read, config version, pools json, caps json or '',
--       then field, raw json pairs to store (the pending ones applied: they stop waiting).
-- Returns the node's status | 'stale' (read again and retry) | 'gone'.
local node_id = ARGV[2]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'capver', 'pools', 'slots_asked')
if not v[1] then return 'gone' end
if v[2] ~= ARGV[3] or redis.call('HGET', k('config'), 'version') ~= ARGV[4] then return 'stale' end
local pools = cjson.decode(ARGV[5])
local status = v[1]
if status ~= 'offline' then status = live_status(node_id, pools) end
set_membership(node_id, decode_list(v[3]), pools, status)
redis.call('HSET', nkey, 'pools', ARGV[5], 'pools_sig', redis.sha1hex(ARGV[5]), 'status', status,
  'slots', slots_for(node_id, v[4]))
if ARGV[6] ~= '' then
  redis.call('HSET', nkey, 'caps', ARGV[6])
  local pending = cjson.decode(redis.call('HGET', nkey, 'pending') or '{}')
  for i = 7, #ARGV, 2 do
    redis.call('HSET', nkey, ARGV[i], ARGV[i + 1])
    if pending[ARGV[i]] == ARGV[i + 1] then pending[ARGV[i]] = nil end
  end
  if next(pending) == nil then
    redis.call('HDEL', nkey, 'pending')
  else
    redis.call('HSET', nkey, 'pending', cjson.encode(pending))
  end
  redis.call('HINCRBY', nkey, 'capver', 1)
end
return status
