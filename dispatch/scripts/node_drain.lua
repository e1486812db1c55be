-- Drain a node (no new jobs; its jobs finish) or resume it. The flag is kept by node id,
-- apart from the node's record, so it survives reconnects until resumed.
-- A node's own resume puts it back in its pools, so it shares the window of its re-pools (see
-- repool_claim); a drain, or anything asked by an admin, is done at once. Asking for the state
-- the node is already in changes nothing.
-- ARGV: prefix, node_id, '1' to drain | '0' to resume, re-pool window ms (0 unless the node asks)
-- Returns {status, channel or '', slots in use} | {'unknown'} (no record of that node id)
--       | {'soon', ms until the node may resume itself}.
local node_id = ARGV[2]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'pools', 'channel', 'used')
if not v[1] then
  -- no record (offline for long): a resume still clears a kept drain flag
  if ARGV[3] == '0' and redis.call('SREM', k('drained'), node_id) == 1 then return {'offline', '', 0} end
  return {'unknown'}
end
local flagged = redis.call('SISMEMBER', k('drained'), node_id) == 1
if flagged == (ARGV[3] == '1') then return {v[1], v[3] or '', tonumber(v[4]) or 0} end
local window = tonumber(ARGV[4]) or 0
if ARGV[3] == '0' and window > 0 and v[1] ~= 'offline' then
  local now = now_ms()
  if not repool_claim(nkey, window, now) then
    return {'soon', tonumber(redis.call('HGET', nkey, 'repool_ms')) + window - now}
  end
end
if ARGV[3] == '1' then
  redis.call('SADD', k('drained'), node_id)
else
  redis.call('SREM', k('drained'), node_id)
end
local status = v[1]
if status ~= 'offline' then
  local pools = decode_list(v[2])
  status = live_status(node_id, pools)
  set_membership(node_id, pools, pools, status)
  redis.call('HSET', nkey, 'status', status)
end
return {status, v[3] or '', tonumber(v[4]) or 0}
