-- May a WebRTC signalling frame go from one member to another? Both must be members of the
-- room, and the receiver must not have refused the sender's raw voice (absent = wanted).
-- ARGV: prefix, room code, sender session_id, receiver session_id
-- Returns the receiver's channel, or '' (the frame is dropped).
local mkey = k('room', ARGV[2], 'members')
if redis.call('HEXISTS', mkey, ARGV[3]) == 0 then return '' end
local raw = redis.call('HGET', mkey, ARGV[4])
if not raw then return '' end
local entry = cjson.decode(raw)
if entry.raw_voice_preferences[ARGV[3]] == false then return '' end
return entry.channel
