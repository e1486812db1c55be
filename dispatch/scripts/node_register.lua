-- A node registers (or registers again): bind its id to this socket, store what it can do,
-- put it in its pools, start its lease. A register again on the same socket changes
-- capabilities like a heartbeat does: when they differ and the node was re-pooled within the
-- window, the new ones wait (`pending`, see note_pending) and its pools stay as they are.
-- ARGV: prefix, node_id, token, channel, config version, caps json, pools json, slots asked,
--       info json, lease ms, raw language_capabilities, raw capability_by_type,
--       raw installed_services, '1' when we just made the id up, re-pool window ms,
--       the token's tenant ('' none)
-- Returns {status, replaced channel or '', job ids the replaced socket held...}
--       | {'stale'} (config changed: recompute) | {'taken'}
--       | {'collision'} (a made-up id already exists: make another).
local node_id, token, channel = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', k('config'), 'version') ~= ARGV[5] then return {'stale'} end
local nkey = k('node', node_id)
if ARGV[14] == '1' and redis.call('EXISTS', nkey) == 1 then return {'collision'} end
local old = redis.call('HMGET', nkey, 'status', 'token', 'channel', 'pools')
local replaced = ''
if old[1] and old[1] ~= 'offline' then
  if old[2] ~= token then return {'taken'} end
  if old[3] ~= channel then replaced = old[3] end
end
local now = now_ms()
local fields = {'language_capabilities', ARGV[11], 'capability_by_type', ARGV[12], 'installed_services', ARGV[13]}
local status = old[1]
local apply = true
if old[1] and old[1] ~= 'offline' and old[3] == channel then
  apply = note_pending(nkey, fields) and repool_claim(nkey, tonumber(ARGV[15]), now)
end
if apply then
  local pools = cjson.decode(ARGV[7])
  status = live_status(node_id, pools)
  set_membership(node_id, decode_list(old[4]), pools, status)
  redis.call('HSET', nkey, 'status', status, 'caps', ARGV[6], 'pools', ARGV[7], unpack(fields))
  redis.call('HSET', nkey, 'pools_sig', redis.sha1hex(ARGV[7]))  -- the fleet summary groups nodes by it
  redis.call('HDEL', nkey, 'pending')
  redis.call('HINCRBY', nkey, 'capver', 1)
end
redis.call('PERSIST', nkey)
redis.call('PERSIST', k('node', node_id, 'times'))
redis.call('HSET', nkey,
  'token', token, 'channel', channel,
  'slots_asked', ARGV[8], 'slots', slots_for(node_id, ARGV[8]), 'info', ARGV[9],
  'registered_ms', now, 'last_seen_ms', now, 'tenant', ARGV[16] or '')
redis.call('HSETNX', nkey, 'used', 0)
redis.call('SADD', k('nodes'), node_id)
redis.call('ZADD', k('leases'), now + tonumber(ARGV[10]), node_id)
local result = {status, replaced}
if replaced ~= '' then
  for _, job_id in ipairs(redis.call('SMEMBERS', k('node', node_id, 'jobs'))) do
    result[#result + 1] = job_id
  end
end
return result
