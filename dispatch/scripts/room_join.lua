-- A session joins a room (a join is activity).
-- ARGV: prefix, room code, session_id, member entry json (as room_create.lua), max members
-- Returns {'ok', room id, every member's entry...} | {'no_session'} | {'already'} (it is in a
-- room) | {'not_found'} | {'full'}.
local code, session_id = ARGV[2], ARGV[3]
local skey = k('session', session_id)
if redis.call('EXISTS', skey) == 0 then return {'no_session'} end
if redis.call('HGET', skey, 'room') then return {'already'} end
local rkey, mkey = k('room', code), k('room', code, 'members')
local room_id = redis.call('HGET', rkey, 'id')
if not room_id then return {'not_found'} end
if redis.call('HLEN', mkey) >= tonumber(ARGV[5]) then return {'full'} end
local now = now_ms()
local entry = cjson.decode(ARGV[4])
entry.seq, entry.joined_ms = redis.call('HINCRBY', rkey, 'seq', 1), now
redis.call('HSET', mkey, session_id, cjson.encode(entry))
redis.call('ZADD', k('rooms'), now, code)
redis.call('HSET', skey, 'room', code)
redis.call('HINCRBY', k('metrics'), 'room_members', 1)
local out = {'ok', room_id}
for _, text in ipairs(redis.call('HVALS', mkey)) do out[#out + 1] = text end
return out
