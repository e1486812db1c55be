-- A member leaves its room (room_drop in _lib.lua; the last one out deletes it).
-- ARGV: prefix, room code, session_id
-- Returns {'ok', {code, the remaining members' entries...} or {}} | {'not_found'} (no such room,
-- or not a member).
local out = {}
if not room_drop(ARGV[2], ARGV[3], out) then return {'not_found'} end
return {'ok', out[1] or {}}
