-- Take offline the nodes whose lease ran out while their socket stayed open (claimed by one
-- worker copy: the lease is removed here). ARGV: prefix, max count, keep s.
-- Returns a flat list: node_id, channel, then its job ids, then '' as a separator.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, node_id in ipairs(expired) do
  redis.call('ZREM', k('leases'), node_id)
  local nkey = k('node', node_id)
  local v = redis.call('HMGET', nkey, 'channel', 'pools', 'status')
  if v[3] and v[3] ~= 'offline' then
    set_membership(node_id, decode_list(v[2]), {}, 'offline')
    redis.call('HSET', nkey, 'status', 'offline', 'offline_ms', now)
    redis.call('EXPIRE', nkey, tonumber(ARGV[3]))
    redis.call('EXPIRE', k('node', node_id, 'times'), tonumber(ARGV[3]))
    out[#out + 1] = node_id
    out[#out + 1] = v[1] or ''
    for _, job_id in ipairs(redis.call('SMEMBERS', k('node', node_id, 'jobs'))) do
      out[#out + 1] = job_id
    end
    out[#out + 1] = ''
  end
end
return out
