-- A node's socket is gone: out of every pool, status offline, record kept 15 minutes.
-- ARGV: prefix, node_id, channel (only the socket that owns the id may take it offline), keep s.
-- Returns {'offline', job ids it held...} | {'replaced'}.
local node_id = ARGV[2]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'channel', 'pools', 'status')
if v[1] ~= ARGV[3] or v[3] == 'offline' then return {'replaced'} end
set_membership(node_id, decode_list(v[2]), {}, 'offline')
redis.call('HSET', nkey, 'status', 'offline', 'offline_ms', now_ms())
redis.call('EXPIRE', nkey, tonumber(ARGV[4]))
redis.call('EXPIRE', k('node', node_id, 'times'), tonumber(ARGV[4]))
redis.call('ZREM', k('leases'), node_id)
local result = {'offline'}
for _, job_id in ipairs(redis.call('SMEMBERS', k('node', node_id, 'jobs'))) do
  result[#result + 1] = job_id
end
return result
