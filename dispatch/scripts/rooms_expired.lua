-- Close the rooms idle for too long: each is deleted here, so one worker copy claims it and
-- tells its members. ARGV: prefix, idle ms, max count
-- Returns a flat list: room code, member session_id, member channel, for each member.
local now = now_ms()
local idle = redis.call('ZRANGEBYSCORE', k('rooms'), '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, code in ipairs(idle) do
  local mkey = k('room', code, 'members')
  local members = redis.call('HGETALL', mkey)
  for i = 1, #members, 2 do
    local skey = k('session', members[i])
    if redis.call('HGET', skey, 'room') == code then redis.call('HDEL', skey, 'room') end
    out[#out + 1] = code
    out[#out + 1] = members[i]
    out[#out + 1] = cjson.decode(members[i + 1]).channel
  end
  redis.call('DEL', k('room', code), mkey)
  redis.call('ZREM', k('rooms'), code)
  redis.call('HINCRBY', k('metrics'), 'rooms', -1)
  redis.call('HINCRBY', k('metrics'), 'room_members', -(#members / 2))
end
return out
