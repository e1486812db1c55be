-- Drain a node (no new jobs; its jobs finish) or resume it. The flag is kept by node id,
-- apart from the node's record, so it survives reconnects until resumed.
-- ARGV: prefix, node_id, '1' to drain | '0' to resume
-- Returns {status, channel or '', slots in use} | {'unknown'} (no record of that node id).
local node_id = ARGV[2]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'pools', 'channel', 'used')
if not v[1] then
  -- no record (offline for long): a resume still clears a kept drain flag
  if ARGV[3] == '0' and redis.call('SREM', k('drained'), node_id) == 1 then return {'offline', '', 0} end
  return {'unknown'}
end
if ARGV[3] == '1' then
  redis.call('SADD', k('drained'), node_id)
else
  redis.call('SREM', k('drained'), node_id)
end
local status = v[1]
if status ~= 'offline' then
  local pools = decode_list(v[2])
  status = live_status(node_id, pools)
  set_membership(node_id, pools, pools, status)
  redis.call('HSET', nkey, 'status', status)
end
return {status, v[3] or '', tonumber(v[4]) or 0}
