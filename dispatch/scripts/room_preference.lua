-- A member says whether it wants another member's raw voice: stored on its own entry as
-- raw_voice_preferences[target] = wanted (only about a current member).
-- ARGV: prefix, room code, session_id, target session_id, '1' (receive) or '0'
-- Returns {'ok', every member's entry...} | {'not_found'} (no such room, or not a member).
local mkey = k('room', ARGV[2], 'members')
local raw = redis.call('HGET', mkey, ARGV[3])
if not raw then return {'not_found'} end
if redis.call('HEXISTS', mkey, ARGV[4]) == 1 then
  local entry = cjson.decode(raw)
  entry.raw_voice_preferences[ARGV[4]] = ARGV[5] == '1'
  redis.call('HSET', mkey, ARGV[3], cjson.encode(entry))
end
local out = {'ok'}
for _, text in ipairs(redis.call('HVALS', mkey)) do out[#out + 1] = text end
return out
