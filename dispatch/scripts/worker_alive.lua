-- A scheduler_worker copy says it is alive (every pass): its own key with a TTL, and its name
-- in the workers zset scored by when that runs out (Redis clock), so readers count live
-- copies without scanning keys. Names silent for an hour are dropped.
-- ARGV: prefix, name, ttl s
local now = now_ms()
local ttl = tonumber(ARGV[3])
redis.call('SET', k('worker', ARGV[2]), 'alive', 'EX', ttl)
redis.call('ZADD', k('workers'), now + ttl * 1000, ARGV[2])
redis.call('ZREMRANGEBYSCORE', k('workers'), '-inf', now - 3600000)
return 'ok'
