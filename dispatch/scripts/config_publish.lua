-- Publish a compiled pool configuration: routes, slot overrides and the version, atomically.
-- ARGV: prefix, version, config json, auto ("1"/"0"), slot overrides json, epoch, then need,
--       route pairs. The epoch is kept while the store keeps its data: a new one means every
--       process must treat live state as lost (docs/architecture.md, "When Redis fails").
-- Node memberships follow, node by node, through node_pools.lua.
redis.call('DEL', k('routes'), k('slots'))
for i = 7, #ARGV, 2 do
  redis.call('HSET', k('routes'), ARGV[i], ARGV[i + 1])
end
for node_id, slots in pairs(cjson.decode(ARGV[5])) do
  redis.call('HSET', k('slots'), node_id, slots)
end
redis.call('HSET', k('config'), 'version', ARGV[2], 'json', ARGV[3], 'auto', ARGV[4])
redis.call('HSETNX', k('config'), 'epoch', ARGV[6])
return redis.call('HGET', k('config'), 'epoch')
