-- A node token was revoked: remember it (heartbeats then refuse it) and return the channels
-- of its connected nodes so they can be closed. An admin action: it may look at every node.
-- ARGV: prefix, token id
redis.call('SADD', k('revoked'), ARGV[2])
local channels = {}
for _, node_id in ipairs(redis.call('SMEMBERS', k('nodes'))) do
  local v = redis.call('HMGET', k('node', node_id), 'token', 'status', 'channel')
  if v[1] == ARGV[2] and v[2] and v[2] ~= 'offline' then channels[#channels + 1] = v[3] end
end
return channels
