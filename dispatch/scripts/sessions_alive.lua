-- A server process renews the leases of its open sessions (every heartbeat interval), so a
-- process that dies without closing them (SIGKILL, power loss) stops counting them once the
-- leases run out. A session closed meanwhile (its record deleted: the worker found its lease
-- run out while this process could not reach Redis) is not brought back.
-- ARGV: prefix, lease ms, session ids. Returns the ids of those no longer open.
local deadline = now_ms() + tonumber(ARGV[2])
local gone = {}
for i = 3, #ARGV do
  if redis.call('EXISTS', k('session', ARGV[i])) == 1 then
    redis.call('ZADD', k('sessions'), deadline, ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
