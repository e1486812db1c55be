-- A session creates a room and is its first member.
-- ARGV: prefix, room code, room id, session_id, member entry json (session_id, display_name,
--       preferred_lang, lang, channel, raw_voice_preferences)
-- Returns {'ok', the member's entry} | {'no_session'} | {'already'} (it is in a room)
--   | {'taken'} (a live room has that code: draw another).
local code, session_id = ARGV[2], ARGV[4]
local skey = k('session', session_id)
if redis.call('EXISTS', skey) == 0 then return {'no_session'} end
if redis.call('HGET', skey, 'room') then return {'already'} end
local rkey = k('room', code)
if redis.call('EXISTS', rkey) == 1 then return {'taken'} end
local now = now_ms()
local entry = cjson.decode(ARGV[5])
entry.seq, entry.joined_ms = 1, now
local text = cjson.encode(entry)
redis.call('HSET', rkey, 'id', ARGV[3], 'created_ms', now, 'seq', 1)
redis.call('HSET', k('room', code, 'members'), session_id, text)
redis.call('ZADD', k('rooms'), now, code)
redis.call('HSET', skey, 'room', code)
redis.call('HINCRBY', k('metrics'), 'rooms', 1)
redis.call('HINCRBY', k('metrics'), 'room_members', 1)
return {'ok', text}
