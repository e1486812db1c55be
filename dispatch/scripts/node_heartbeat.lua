-- Heartbeats (one, or many arriving together: dispatch/batches.py): each refreshes its node's
-- lease, stores the reported load, and notes capability fields that differ from the stored
-- ones (they wait in `pending`); says when the node is due a re-pool.
-- ARGV: prefix, lease ms, re-pool window ms, then per heartbeat: node_id, channel, load json,
--       its capability fields as "field\njson\nfield\njson..." ('' for none; canonical JSON
--       holds no raw newline).
-- Returns one outcome per heartbeat: 'ok' | 'changed' (a change waits and the window since the
-- node's last re-pool has passed: the caller re-pools it now) | 'replaced' (another socket owns
-- the id) | 'offline' | 'revoked'.
local lease, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()

local function beat(node_id, channel, load, packed)
  local nkey = k('node', node_id)
  local v = redis.call('HMGET', nkey, 'status', 'channel', 'token')
  if not v[1] or v[1] == 'offline' then return 'offline' end
  if v[2] ~= channel then return 'replaced' end
  if v[3] ~= '' and redis.call('ZSCORE', k('revoked'), v[3]) then return 'revoked' end
  redis.call('HSET', nkey, 'load', load, 'last_seen_ms', now)
  redis.call('ZADD', k('leases'), 'XX', now + lease, node_id)
  local fields = {}
  for item in string.gmatch(packed, '[^\n]+') do fields[#fields + 1] = item end
  if note_pending(nkey, fields) and repool_claim(nkey, window, now) then return 'changed' end
  return 'ok'
end

local outcomes = {}
for i = 4, #ARGV, 4 do
  outcomes[#outcomes + 1] = beat(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
return outcomes
