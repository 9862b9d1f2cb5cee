-- Queue a message for the client on a task's inbox (delivered on tasks/result).
-- KEYS: 1-5 per-task
-- ARGV: 1 message JSON, 2 channel
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local n = redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[3], redis.call('HGET', KEYS[1], 'expires'))
redis.call('PUBLISH', ARGV[2], cjson.encode({ type = 'message', task_id = redis.call('HGET', KEYS[1], 'id') }))
return n
