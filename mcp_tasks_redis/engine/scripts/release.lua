-- A stopping worker hands a task back: lease dropped, the attempt not counted, and the job put
-- back at the head of the queue with idle workers woken, so another worker starts it at once.
-- Does nothing if the task finished or the lease is someone else's.
-- KEYS: 1-5 per-task, 6 active, 7 arq queue, 8 arq job key
-- ARGV: 1 worker id, 2 wake channel, 3 job payload
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if TERMINAL[redis.call('HGET', KEYS[1], 'status')] then return 0 end
if redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires'))
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
redis.call('HINCRBY', KEYS[1], 'attempt', -1)
redis.call('ZADD', KEYS[6], now_ms(), id)
if redis.call('EXISTS', KEYS[8]) == 0 then
  redis.call('SET', KEYS[8], ARGV[3], 'PX', math.max(expires - now_ms(), 1000))
end
-- Score 1 (arq reads 0 as "no job"): ahead of every job enqueued since it was first picked up.
redis.call('ZADD', KEYS[7], 1, id)
keep_until(KEYS[7], expires)
redis.call('PUBLISH', ARGV[2], id)
return 1
