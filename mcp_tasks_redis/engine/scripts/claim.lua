-- A worker takes a task it was handed: count the attempt and take the lease, unless the task is
-- finished, another worker holds a live lease, or the attempts are used up (then it fails).
-- KEYS: 1-5 per-task, 6 active, 7 arq queue
-- ARGV: 1 worker id, 2 lease ms, 3 grace ms, 4 channel, 5 stream maxlen
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'missing' }
end
local worker, lease, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], 'status')
if TERMINAL[cur] then
  return { 'terminal', fields(KEYS[1]) }
end
local now = now_ms()
local owner = redis.call('HGET', KEYS[1], 'lease_owner')
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if owner and owner ~= worker and until_ms > now then
  return { 'held', owner }
end
local id = redis.call('HGET', KEYS[1], 'id')
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local max_attempts = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '1')
if attempt > max_attempts then
  local reason = 'Task abandoned: its worker was lost ' .. max_attempts .. ' time(s)'
  local err = cjson.encode({ code = -32603, message = reason })
  finish(id, 'failed', reason, nil, err, KEYS[6], ARGV[4], ARGV[5])
  return { 'exhausted', fields(KEYS[1]) }
end
redis.call('HSET', KEYS[1], 'lease_owner', worker, 'lease_until', now + lease)
redis.call('ZADD', KEYS[6], now + lease, id)
-- arq would keep a running job in its queue until it finishes, and every worker reads only the
-- head of the queue: with more tasks running than that window, queued jobs behind them would
-- go unseen. The lease now guards the task; the reaper or a hand-back puts the job back.
redis.call('ZREM', KEYS[7], id)
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires'))
if expires < now + lease + grace then
  expire_task(now + lease + grace)
  keep_until(KEYS[6], now + lease + grace)
end
return { 'run', fields(KEYS[1]) }
