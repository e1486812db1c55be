-- Take offline the nodes whose lease ran out while their socket stayed open (claimed by one
-- worker copy: the lease is removed here). ARGV: prefix, max count, keep s.
-- Returns a flat list: node_id, channel, then its job ids, then '' as a separator.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, node_id in ipairs(expired) do
  redis.call('ZREM', k('leases'), node_id)
  local v = redis.call('HMGET', k('node', node_id), 'channel', 'pools', 'status')
  if v[3] and v[3] ~= 'offline' then
    out[#out + 1] = node_id
    out[#out + 1] = v[1] or ''
    for _, job_id in ipairs(take_offline(node_id, v[2], now, tonumber(ARGV[3]))) do
      out[#out + 1] = job_id
    end
    out[#out + 1] = ''
  end
end
return out
