-- Put tasks whose retry backoff is over back into their dispatch streams. Each task is taken off
-- the delayed set first, so that two workers releasing at once release it once.
-- KEYS: 1 delayed set, 2-4 dispatch streams (high, normal, low), 5.. the records of the tasks
-- ARGV: 1 the tasks' ids, in the order of their records in KEYS
local released = 0
for i = 5, #KEYS do
  local id = ARGV[i - 4]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local cur = redis.call('HMGET', KEYS[i], 'st', 'q', 'r', 'a', 'c', 'ttl', 'tool', 'own', 'ses', 'job', 'pl')
    if cur[1] and not TERMINAL[cur[1]] and (cur[2] == false or cur[2] == '') then
      local entry = push({}, 'id', id, 'r', cur[3], 'a', cur[4], 'c', cur[5], 'ttl', cur[6], 'job', cur[10])
      if cur[7] then push(entry, 'tool', cur[7]) end
      if cur[8] then push(entry, 'own', cur[8]) end
      if cur[9] then push(entry, 'ses', cur[9]) end
      redis.call('HSET', KEYS[i], 'q', redis.call('XADD', level_stream(2, cur[11]), '*', unpack(entry)))
      released = released + 1
    end
  end
end
return released
