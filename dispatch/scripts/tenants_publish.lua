-- Publish the tenants and their live keys, atomically (configuration: docs/protocol.md, tenants).
-- ARGV: prefix, version, number of tenants n, then n pairs (name, record json), then pairs
--       (key id, {tenant, secret} json). A key that is not published is revoked or unknown.
redis.call('DEL', k('tenants'), k('tenant_keys'))
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do
  redis.call('HSET', k('tenants'), ARGV[i], ARGV[i + 1])
end
for i = 4 + 2 * n, #ARGV, 2 do
  redis.call('HSET', k('tenant_keys'), ARGV[i], ARGV[i + 1])
end
redis.call('HSET', k('config'), 'tenants_version', ARGV[2])
return 'ok'
