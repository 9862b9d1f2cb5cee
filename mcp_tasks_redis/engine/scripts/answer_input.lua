-- The client's reply to an input request reaches whichever process: store it in the task's
-- reply slot and wake the waiting worker. Unknown or already-answered keys are ignored.
-- KEYS: 1-5 per-task
-- ARGV: 1 request key, 2 reply JSON, 3 channel
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[5], redis.call('HGET', KEYS[1], 'expires'))
redis.call('PUBLISH', ARGV[3], cjson.encode({ type = 'reply', task_id = redis.call('HGET', KEYS[1], 'id'),
                                              key = ARGV[1] }))
return 1
