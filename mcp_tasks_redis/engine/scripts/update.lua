-- Change a task: status and/or message, result, error, progress, all written together.
-- Refuses anything on a terminal task and any transition the state machine does not allow.
-- KEYS: 1-5 per-task, 6 active
-- ARGV: 1 status ('' = keep), 2 '1' if a message is given, 3 message, 4 result JSON,
--       5 error JSON, 6 progress JSON, 7 lease fence ('' = none), 8 channel, 9 stream maxlen
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOT_FOUND')
end
local status, has_msg, msg = ARGV[1], ARGV[2] == '1', ARGV[3]
local result, err, progress, fence = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local cur = redis.call('HGET', KEYS[1], 'status')
if TERMINAL[cur] then
  return redis.error_reply('TERMINAL ' .. cur)
end
if fence ~= '' and redis.call('HGET', KEYS[1], 'lease_owner') ~= fence then
  return redis.error_reply('LEASE_LOST')
end
local id = redis.call('HGET', KEYS[1], 'id')
if status ~= '' and status ~= cur then
  local ok = TERMINAL[status] or (cur == 'working' and status == 'input_required')
             or (cur == 'input_required' and status == 'working')
  if not ok then
    return redis.error_reply('TRANSITION ' .. cur)
  end
  if TERMINAL[status] then
    finish(id, status, has_msg and msg or nil, result, err, KEYS[6], ARGV[8], ARGV[9])
    return fields(KEYS[1])
  end
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'updated', now)
if has_msg then redis.call('HSET', KEYS[1], 'msg', msg) end
if result ~= '' then redis.call('HSET', KEYS[1], 'result', result) end
if err ~= '' then redis.call('HSET', KEYS[1], 'error', err) end
if progress ~= '' then redis.call('HSET', KEYS[1], 'progress', progress) end
local event = { task_id = id, status = status ~= '' and status or cur,
                message = redis.call('HGET', KEYS[1], 'msg') or cjson.null }
if status ~= '' and status ~= cur then
  redis.call('HSET', KEYS[1], 'status', status)
  event['type'] = 'status'
elseif progress ~= '' then
  event['type'] = 'progress'
  event['progress'] = cjson.decode(progress)
else
  event['type'] = 'message'
end
emit(ARGV[8], ARGV[9], event)
return fields(KEYS[1])
