-- A node token was revoked: remember it (heartbeats then refuse it) and return the channels
-- of its connected nodes so they can be closed. An admin action: it may look at every node.
-- ARGV: prefix, token id ('' to look again at every token revoked since ARGV[3] ms ago).
-- Called again by the worker for recent revocations, in case a close message was lost.
local now = now_ms()
local tokens = {}
if ARGV[2] ~= '' then
  redis.call('ZADD', k('revoked'), now, ARGV[2])
  tokens[ARGV[2]] = true
else
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', k('revoked'), now - tonumber(ARGV[3]), '+inf')) do
    tokens[token] = true
  end
  if next(tokens) == nil then return {} end
end
local channels = {}
for _, node_id in ipairs(redis.call('SMEMBERS', k('nodes'))) do
  local v = redis.call('HMGET', k('node', node_id), 'token', 'status', 'channel')
  if v[1] and tokens[v[1]] and v[2] ~= 'offline' then channels[#channels + 1] = v[3] end
end
return channels
