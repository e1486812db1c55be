-- A job's first attempt found no node within the dispatch wait: keep its story and count it.
-- ARGV: prefix, job_id, session_id, trace_id, utterance_index, need, route json, first pool,
--       cut ms, ending json, history s, job index keep s, tenant ('' none)
local skey = k('story', ARGV[2])
redis.call('HSET', skey, 'job_id', ARGV[2], 'session', ARGV[3], 'trace', ARGV[4], 'utt', ARGV[5],
  'need', ARGV[6], 'route', ARGV[7], 'cut_ms', ARGV[9], 'attempts', '[]')
local now = now_ms()
end_story(ARGV[2], ARGV[10], tonumber(ARGV[11]), now)
index_job(ARGV[3], ARGV[4], ARGV[2], now, tonumber(ARGV[12]))
local first = ARGV[8]
if first == '' then first = 'none' end
redis.call('HINCRBY', k('metrics'), 'no_available:' .. first, 1)
redis.call('HINCRBY', k('metrics'), 'jobs_error', 1)
count_usage(ARGV[13], 'jobs', 1, now)
tenant_job_ended(ARGV[13], 'error', 0, now)
return 'ok'
