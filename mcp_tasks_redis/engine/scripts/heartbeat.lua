-- Renew a running task's lease (and so its keys' expiry); answer the task's status so the worker
-- notices a cancel even when the pub/sub message was lost.
-- KEYS: 1-5 per-task, 6 active
-- ARGV: 1 worker id, 2 lease ms, 3 grace ms
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'missing'
end
local cur = redis.call('HGET', KEYS[1], 'status')
if TERMINAL[cur] then
  return cur
end
if redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] then
  return 'lost'
end
local now, lease, grace = now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'lease_until', now + lease)
redis.call('ZADD', KEYS[6], now + lease, redis.call('HGET', KEYS[1], 'id'))
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires'))
if expires < now + lease + grace then
  expire_task(now + lease + grace)
  keep_until(KEYS[6], now + lease + grace)
end
return cur
