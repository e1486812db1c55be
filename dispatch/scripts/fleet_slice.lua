-- Read one slice of the fleet for the fleet summary (dispatch/fleet_summary.py): the next known
-- node ids from an SSCAN cursor and, for each, the fields the summary needs; one round trip per
-- slice, and a bounded one. Reads only. ARGV: prefix, cursor, count, '1' to include caps (only
-- a view filtered by served pair needs them: they are most of the bytes).
-- Returns {next cursor, then per node: id, status ('' when its record expired), slots, used,
--          pools_sig, caps or '', last_seen_ms, jobs_failed, load, eject_until}.
local scan = redis.call('SSCAN', k('nodes'), ARGV[2], 'COUNT', tonumber(ARGV[3]))
local caps = ARGV[4] == '1' and 'caps' or 'no-such-field'
local out = {scan[1]}
for _, node_id in ipairs(scan[2]) do
  local v = redis.call('HMGET', k('node', node_id),
    'status', 'slots', 'used', 'pools_sig', caps, 'last_seen_ms', 'jobs_failed', 'load', 'eject_until')
  out[#out + 1] = node_id
  for i = 1, 9 do out[#out + 1] = v[i] or '' end
end
return out
