-- Forget node ids whose record has expired (offline for longer than the keep time), so the
-- set of known nodes does not grow for ever. ARGV: prefix. Returns how many were forgotten.
local gone = 0
for _, node_id in ipairs(redis.call('SMEMBERS', k('nodes'))) do
  if redis.call('EXISTS', k('node', node_id)) == 0 then
    redis.call('SREM', k('nodes'), node_id)
    gone = gone + 1
  end
end
return gone
