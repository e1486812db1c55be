-- Read the rows one page of the node table shows (dispatch/selectors.py nodes_load): each
-- node's fields and its last processing times, in one round trip. Reads only.
-- ARGV: prefix, then the node ids (a page: 200 at most).
-- Returns per node: {status or '' when its record expired, slots, used, caps, pools, load,
--                    last_seen_ms, jobs_done, jobs_failed, info, eject_until, eject_reason,
--                    eject_code, {times...}}.
local out = {}
for i = 2, #ARGV do
  local v = redis.call('HMGET', k('node', ARGV[i]),
    'status', 'slots', 'used', 'caps', 'pools', 'load', 'last_seen_ms', 'jobs_done', 'jobs_failed', 'info',
    'eject_until', 'eject_reason', 'eject_code')
  local row = {}
  for j = 1, 13 do row[j] = v[j] or '' end
  row[14] = redis.call('LRANGE', k('node', ARGV[i], 'times'), 0, -1)
  out[#out + 1] = row
end
return out
