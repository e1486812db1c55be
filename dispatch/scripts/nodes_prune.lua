-- Forget node ids whose record has expired (offline for longer than the keep time), so the
-- set of known nodes does not grow for ever. ARGV: prefix, then the node ids to check (the
-- fleet summary found them without a record; a bounded slice). Returns how many were forgotten.
local gone = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', k('node', ARGV[i])) == 0 then
    gone = gone + redis.call('SREM', k('nodes'), ARGV[i])
  end
end
return gone
