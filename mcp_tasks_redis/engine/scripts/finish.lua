-- A worker writes its task's outcome. Refused when the task already finished (a cancel that
-- landed first wins) or when this worker's run was superseded (its lease was lost and the task
-- delivered again): the fence is the run number the worker was given.
-- KEYS: 1 record, 2 the shard's failed-task index
-- ARGV: 1 run fence, 2 channel, 3 event payload, 4 expiry ms to keep the outcome for ('' = as
--       set), 5 task id, 6 failure time ms ('' = not a failure), 7 failed index expiry ms,
--       then the record's field/value pairs
local cur = redis.call('HMGET', KEYS[1], 'st', 'r')
if not cur[1] then return 'gone' end
if TERMINAL[cur[1]] then return cur[1] end
if cur[2] ~= ARGV[1] then return 'lost' end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'ok'
