-- A job nobody picked up before its task's TTL ran out: the task fails, visibly, and the job
-- is removed. Nothing happens if the task moved on (finished, or delivered from a newer entry).
-- KEYS: 1 record, 2 dispatch stream, 3 the shard's failed-task index
-- ARGV: 1 task id, 2 entry id, 3 consumer group, 4 now ms, 5 channel, 6 message, 7 error JSON,
--       8 failed index expiry ms
local cur = redis.call('HMGET', KEYS[1], 'st', 'q')
drop_entry(KEYS[2], ARGV[3], ARGV[2])
if not cur[1] or TERMINAL[cur[1]] or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'st', 'failed', 'msg', ARGV[6], 'err', ARGV[7], 'u', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('PUBLISH', ARGV[5], string.sub(status_event(ARGV[1], 'failed', ARGV[6], ARGV[4]), 1, -2)
  .. ',"err":' .. ARGV[7] .. '}')
return 1
