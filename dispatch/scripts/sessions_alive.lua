-- A server process renews the leases of its open sessions (every heartbeat interval), so a
-- process that dies without closing them (SIGKILL, power loss) stops counting them once the
-- leases run out. A session closed meanwhile (its record deleted: the worker found its lease
-- run out while this process could not reach Redis) is not brought back. A session whose
-- ticket's key was revoked, or whose tenant was disabled, is named so its socket ends (4401).
-- ARGV: prefix, lease ms, session ids.
-- Returns {ids of those no longer open, ids of those no longer allowed}.
local deadline = now_ms() + tonumber(ARGV[2])
local gone, refused = {}, {}
local allowed = {}  -- tenant → enabled, read once per call
for i = 3, #ARGV do
  local s = redis.call('HMGET', k('session', ARGV[i]), 'channel', 'tenant', 'key')
  if s[1] then
    redis.call('ZADD', k('sessions'), deadline, ARGV[i])
    local tenant, key_id = s[2], s[3]
    if tenant and tenant ~= '' then
      if allowed[tenant] == nil then
        local record = tenant_record(tenant)
        allowed[tenant] = not (record and record.enabled == false) and (record ~= nil or key_id == '')
      end
      if not allowed[tenant] or (key_id and key_id ~= '' and redis.call('HEXISTS', k('tenant_keys'), key_id) == 0) then
        refused[#refused + 1] = ARGV[i]
      else
        redis.call('ZADD', k('tenant', tenant, 'sessions'), deadline, ARGV[i])
      end
    end
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return {gone, refused}
