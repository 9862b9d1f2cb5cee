-- Deliver a task again from a fresh stream entry: after its worker died (mode 'dead', an attempt
-- counted, the task failed once attempts run out), when a stopping worker hands it back ('back',
-- not counted) or for a retry after a failure ('retry', counted, optionally after a delay).
-- The run number goes up, which fences the previous run out of the task; a task left
-- input_required by the previous run is working again, without that run's requests.
-- KEYS: 1 record, 2 dispatch stream (the old entry's, and the new one's), 3 delayed set,
--       4 the shard's failed-task index
-- ARGV: 1 task id, 2 old entry id, 3 consumer group, 4 mode, 5 attempts allowed, 6 now ms,
--       7 channel, 8 message when attempts ran out, 9 error JSON when attempts ran out,
--       10 due ms ('' = now), 11 status message while waiting ('' = keep), 12 failed index
--       expiry ms
local id, old, group, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HMGET', KEYS[1], 'st', 'r', 'a', 'q', 'c', 'ttl', 'tool', 'own', 'ses', 'job')
if not cur[1] or TERMINAL[cur[1]] or cur[4] ~= old then
  -- Gone, finished, or already delivered again: the old entry is all that is left to clear.
  drop_entry(KEYS[2], group, old)
  return cur[1] and (TERMINAL[cur[1]] and 'terminal' or 'stale') or 'gone'
end
local run, attempt = tonumber(cur[2]) + 1, tonumber(cur[3])
if mode ~= 'back' then
  if attempt >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[1], 'st', 'failed', 'msg', ARGV[8], 'err', ARGV[9], 'u', ARGV[6])
    redis.call('ZADD', KEYS[4], ARGV[6], id)
    redis.call('PEXPIRE', KEYS[4], ARGV[12])
    drop_entry(KEYS[2], group, old)
    redis.call('PUBLISH', ARGV[7], string.sub(status_event(id, 'failed', ARGV[8], ARGV[6]), 1, -2)
      .. ',"err":' .. ARGV[9] .. '}')
    return 'failed'
  end
  attempt = attempt + 1
end
drop_entry(KEYS[2], group, old)
local fields = push({}, 'r', run, 'a', attempt)
if cur[1] == 'input_required' then
  -- The run that asked is gone: its unanswered requests go with it (a new run asks again, under
  -- new keys), and the task is working again.
  local names, has = redis.call('HKEYS', KEYS[1]), {}
  for _, name in ipairs(names) do has[name] = true end
  for _, name in ipairs(names) do
    if string.sub(name, 1, 3) == 'in:' and not has['ans:' .. string.sub(name, 4)] then
      redis.call('HDEL', KEYS[1], name)
    end
  end
  push(fields, 'st', 'working', 'u', ARGV[6])
end
if ARGV[11] ~= '' then push(fields, 'msg', ARGV[11], 'u', ARGV[6]) end
if ARGV[10] ~= '' and tonumber(ARGV[10]) > tonumber(ARGV[6]) then
  push(fields, 'q', '')
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[3], ARGV[10], id)
  redis.call('PUBLISH', ARGV[7], status_event(id, cur[1], ARGV[11] ~= '' and ARGV[11] or cjson.null, ARGV[6]))
  return 'delayed'
end
local entry = push({}, 'id', id, 'r', run, 'a', attempt, 'c', cur[5], 'ttl', cur[6], 'job', cur[10])
if cur[7] then push(entry, 'tool', cur[7]) end
if cur[8] then push(entry, 'own', cur[8]) end
if cur[9] then push(entry, 'ses', cur[9]) end
push(fields, 'q', redis.call('XADD', KEYS[2], '*', unpack(entry)))
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PUBLISH', ARGV[7], id .. ' {"k":"requeued","r":' .. run .. ',"a":' .. attempt .. '}')
return 'requeued'
