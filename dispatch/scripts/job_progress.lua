-- A node acknowledges or starts a job it holds: note it on the job.
-- ARGV: prefix, job_id, node_id, state (accepted|started)
-- Returns {session channel, session_id, utterance_index, trace_id, cut ms} | nil (not its job).
local jkey = k('job', ARGV[2])
local j = redis.call('HMGET', jkey, 'node', 'schan', 'session', 'utt', 'trace', 'cut_ms')
if j[1] ~= ARGV[3] then return nil end
redis.call('HSET', jkey, 'state', ARGV[4])
return {j[2], j[3], j[4], j[5], j[6]}
