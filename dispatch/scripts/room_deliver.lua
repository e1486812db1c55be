-- Where a room job's ending goes, resolved from the room's members as they are now: the
-- members of its language group, and (for the utterance's first result) the members whose
-- language is the speaker's source language, who get its transcript. Never the speaker. A
-- result delivered is activity.
-- ARGV: prefix, room code, speaker session_id, group language, transcript language ('' none)
-- Returns {group: flat session_id, channel...; transcript: the same} ({} when the room is gone).
local mkey = k('room', ARGV[2], 'members')
local members = redis.call('HGETALL', mkey)
if #members == 0 then return {} end
redis.call('ZADD', k('rooms'), 'XX', now_ms(), ARGV[2])
local group, transcript = {}, {}
for i = 1, #members, 2 do
  if members[i] ~= ARGV[3] then
    local entry = cjson.decode(members[i + 1])
    local into = nil
    if entry.lang == ARGV[4] then into = group elseif entry.lang == ARGV[5] then into = transcript end
    if into then
      into[#into + 1] = members[i]
      into[#into + 1] = entry.channel
    end
  end
end
return {group, transcript}
