-- Nodes' sockets are gone (one, or many closing together: dispatch/batches.py): each node out
-- of every pool at once, status offline, record kept 15 minutes.
-- ARGV: prefix, keep s, then node_id, channel pairs (only the socket that owns an id may take
-- it offline).
-- Returns one reply per node: {'offline', job ids it held...} | {'replaced'}.
local keep = tonumber(ARGV[2])
local now = now_ms()
local replies = {}
for i = 3, #ARGV, 2 do
  local node_id = ARGV[i]
  local v = redis.call('HMGET', k('node', node_id), 'channel', 'pools', 'status')
  if v[1] ~= ARGV[i + 1] or v[3] == 'offline' then
    replies[#replies + 1] = {'replaced'}
  else
    local reply = {'offline'}
    for _, job_id in ipairs(take_offline(node_id, v[2], now, keep)) do reply[#reply + 1] = job_id end
    replies[#replies + 1] = reply
  end
end
return replies
