-- The lease of a keyed dispatcher's run (engine/keyed.py, e.g. arq), which has no pending entry
-- to hold: the record says which run is current. Mode 'claim': the first claim takes run 1; a
-- later one (the dispatcher delivered the job again: its worker died or stopped, or a retry is
-- due) bumps the run number, which fences the earlier run out of the task and tells it so (the
-- `requeued` event stops its tool), and counts an attempt unless the earlier run was handed back.
-- The record is kept for at least the run's longest duration. Mode 'back': a stopping worker
-- hands its run back, so that the next claim does not count an attempt.
-- The dispatcher's job key, when given, is kept as long: a job delivered again after the task's
-- TTL must still reach the worker, which then fails the task visibly instead of the dispatcher
-- dropping a job it can no longer read.
-- KEYS: 1 record, 2 the dispatcher's job key (optional)
-- ARGV: 1 mode ('claim' | 'back'), 2 task id, 3 worker id, 4 run handed back ('back'),
--       5 channel, 6 ms the record (and job) must be kept for at least ('claim')
local cur = redis.call('HMGET', KEYS[1], 'st', 'r', 'a', 'c', 'ttl', 'tool', 'own', 'ses', 'job', 'w',
  'hb', 'pl')
if not cur[1] then return false end
if ARGV[1] == 'back' then
  if TERMINAL[cur[1]] or cur[2] ~= ARGV[4] then return 0 end
  redis.call('HSET', KEYS[1], 'hb', '1')
  return 1
end
if TERMINAL[cur[1]] then return { cur[1] } end
local run, attempt = tonumber(cur[2]), tonumber(cur[3])
if cur[10] then
  run = run + 1
  if cur[11] ~= '1' then attempt = attempt + 1 end
  redis.call('HDEL', KEYS[1], 'hb')
  redis.call('HSET', KEYS[1], 'r', run, 'a', attempt, 'w', ARGV[3])
  redis.call('PUBLISH', ARGV[5], ARGV[2] .. ' {"k":"requeued","r":' .. run .. ',"a":' .. attempt .. '}')
else
  redis.call('HSET', KEYS[1], 'w', ARGV[3])
end
for i = 1, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl ~= -2 and ttl < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
end
return { cur[1], run, attempt, cur[4], cur[5], cur[6] or '', cur[7] or '', cur[8] or '', cur[9] or '',
  cur[12] or '1' }
