-- Look at one task whose check time has come: a dead worker's task is re-queued (or failed
-- after its last attempt); a job whose worker died between picking it up and claiming the task
-- is delivered again; a task that outlived its TTL without ever running is failed.
-- KEYS: 1-5 per-task, 6 active, 7 arq queue, 8 arq in-progress key, 9 arq job key
-- ARGV: 1 task id, 2 grace ms, 3 channel, 4 stream maxlen, 5 wake channel, 6 job payload,
--       7 lease ms, 8 length (ms) of arq's in-progress lock
local id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[6], id)
  return 'gone'
end
local cur = redis.call('HGET', KEYS[1], 'status')
if TERMINAL[cur] then
  redis.call('ZREM', KEYS[6], id)
  return 'terminal'
end
local now = now_ms()
local owner = redis.call('HGET', KEYS[1], 'lease_owner')
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if owner and until_ms > now then
  redis.call('ZADD', KEYS[6], until_ms, id)
  return 'alive'
end
local deadline = tonumber(redis.call('HGET', KEYS[1], 'created')) + tonumber(redis.call('HGET', KEYS[1], 'ttl'))
if owner then
  local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt'))
  local max_attempts = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '1')
  if attempt >= max_attempts then
    local reason = 'Task abandoned: its worker was lost ' .. attempt .. ' time(s)'
    finish(id, 'failed', reason, nil, cjson.encode({ code = -32603, message = reason }),
           KEYS[6], ARGV[3], ARGV[4])
    return 'failed'
  end
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
  -- arq would only re-deliver once its in-progress lock expires (job timeout + 10 s); our lease
  -- is the authority on liveness, so the lock of a dead worker is released here.
  redis.call('DEL', KEYS[8])
  if redis.call('EXISTS', KEYS[9]) == 0 then
    redis.call('SET', KEYS[9], ARGV[6], 'PX', math.max(deadline - now, 0) + tonumber(ARGV[2]))
  end
  redis.call('ZADD', KEYS[7], now, id)
  keep_until(KEYS[7], tonumber(redis.call('HGET', KEYS[1], 'expires')))
  redis.call('ZADD', KEYS[6], now + tonumber(ARGV[7]), id)
  redis.call('PUBLISH', ARGV[5], id)
  emit(ARGV[3], ARGV[4], { type = 'requeued', task_id = id, status = cur, message = cjson.null })
  return 'requeued'
end
if now >= deadline then
  local reason = 'Task expired before a worker could finish it'
  finish(id, 'failed', reason, nil, cjson.encode({ code = -32603, message = reason }),
         KEYS[6], ARGV[3], ARGV[4])
  return 'expired'
end
local lease = tonumber(ARGV[7])
-- No lease, yet arq's in-progress lock is set: a worker picked the job up. It claims the task
-- within milliseconds; if it has not after a whole lease, it died in between, and arq would not
-- deliver the job again before its lock expired (the longest job timeout + 10 s).
local lock_ttl = redis.call('PTTL', KEYS[8])
if lock_ttl ~= -2 then
  local picked_for = lease
  if lock_ttl >= 0 then picked_for = math.max(tonumber(ARGV[8]) - lock_ttl, 0) end
  if picked_for < lease then
    redis.call('ZADD', KEYS[6], math.min(deadline, now + lease - picked_for), id)
    return 'picked'
  end
  redis.call('DEL', KEYS[8])
  if redis.call('EXISTS', KEYS[9]) == 0 then
    redis.call('SET', KEYS[9], ARGV[6], 'PX', math.max(deadline - now, 0) + tonumber(ARGV[2]))
  end
  redis.call('ZADD', KEYS[7], now, id)
  keep_until(KEYS[7], tonumber(redis.call('HGET', KEYS[1], 'expires')))
  redis.call('ZADD', KEYS[6], math.min(deadline, now + lease), id)
  redis.call('PUBLISH', ARGV[5], id)
  emit(ARGV[3], ARGV[4], { type = 'requeued', task_id = id, status = cur, message = cjson.null })
  return 'redelivered'
end
-- Still queued (waiting for a free worker slot): look again later, less often the longer it
-- waits, so that a long queue costs the reapers little. A task without a job has nothing to
-- watch before its deadline.
if redis.call('ZSCORE', KEYS[7], id) then
  local created = tonumber(redis.call('HGET', KEYS[1], 'created'))
  local every = math.min(math.max(lease, now - created), 10 * lease)
  redis.call('ZADD', KEYS[6], math.min(deadline, now + every), id)
else
  redis.call('ZADD', KEYS[6], deadline, id)
end
return 'waiting'
