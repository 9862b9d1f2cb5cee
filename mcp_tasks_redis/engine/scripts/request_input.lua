-- A running tool asks the client for input: the request is stored under its key (and, for the
-- 2025 wire, queued for delivery on tasks/result), and the task goes input_required.
-- KEYS: 1-5 per-task
-- ARGV: 1 request key, 2 request JSON, 3 inbox message JSON ('' = none), 4 channel,
--       5 stream maxlen, 6 lease fence ('' = none)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local cur = redis.call('HGET', KEYS[1], 'status')
if TERMINAL[cur] then return redis.error_reply('TERMINAL ' .. cur) end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[6] then
  return redis.error_reply('LEASE_LOST')
end
local expires = redis.call('HGET', KEYS[1], 'expires')
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[4], expires)
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('PEXPIREAT', KEYS[3], expires)
end
redis.call('HSET', KEYS[1], 'status', 'input_required', 'updated', now_ms())
emit(ARGV[4], ARGV[5], { type = 'status', task_id = redis.call('HGET', KEYS[1], 'id'),
                         status = 'input_required', input = ARGV[1],
                         message = redis.call('HGET', KEYS[1], 'msg') or cjson.null })
return fields(KEYS[1])
