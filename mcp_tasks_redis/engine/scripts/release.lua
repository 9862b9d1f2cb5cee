-- A stopping worker hands a task back: lease dropped and the attempt not counted, so the next
-- worker starts it afresh. Does nothing if the task finished or the lease is someone else's.
-- KEYS: 1-5 per-task, 6 active
-- ARGV: 1 worker id
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if TERMINAL[redis.call('HGET', KEYS[1], 'status')] then return 0 end
if redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
redis.call('HINCRBY', KEYS[1], 'attempt', -1)
redis.call('ZADD', KEYS[6], now_ms(), redis.call('HGET', KEYS[1], 'id'))
return 1
