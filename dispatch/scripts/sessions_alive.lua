-- A server process renews the leases of its open sessions (every heartbeat interval), so a
-- process that dies without closing them (SIGKILL, power loss) stops counting them once the
-- leases run out. A session closed meanwhile (its record deleted) is not brought back.
-- ARGV: prefix, lease ms, session ids. Returns how many were renewed.
local deadline = now_ms() + tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  if redis.call('EXISTS', k('session', ARGV[i])) == 1 then
    redis.call('ZADD', k('sessions'), deadline, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
