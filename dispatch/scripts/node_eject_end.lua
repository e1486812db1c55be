-- End a node's ejection now (staff: the node was mended): it takes jobs again at once, and its
-- run of failures and the doubling of its ejections start over.
-- ARGV: prefix, node_id
-- Returns {'ended', status} (it was ejected) | {'none', status} (it was not) | {'unknown'}.
local node_id = ARGV[2]
local nkey = k('node', node_id)
local v = redis.call('HMGET', nkey, 'status', 'pools', 'eject_until')
if not v[1] then return {'unknown'} end
for _, name in ipairs(decode_list(v[2])) do redis.call('ZREM', k('ejected', name), node_id) end
redis.call('HDEL', nkey, 'eject_until', 'eject_reason', 'eject_code', 'ejected_ms')
redis.call('HSET', nkey, 'fails_in_row', 0, 'eject_count', 0)
if v[3] and tonumber(v[3]) > now_ms() then return {'ended', v[1]} end
return {'none', v[1]}
