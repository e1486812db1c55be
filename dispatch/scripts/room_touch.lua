-- A member's audio is activity: the room's idle clock starts again.
-- ARGV: prefix, room code, session_id. Returns 1, or 0 when it is not a member (any more).
if redis.call('HEXISTS', k('room', ARGV[2], 'members'), ARGV[3]) == 0 then return 0 end
redis.call('ZADD', k('rooms'), now_ms(), ARGV[2])
return 1
