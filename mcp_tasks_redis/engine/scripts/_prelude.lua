-- Shared by every script (prepended by engine/lua.py).
-- Per-task keys arrive as KEYS[1..5]: record, events, inbox, inputs, replies.
local TERMINAL = { completed = true, failed = true, cancelled = true }

-- Read the server clock once per script: every write of one change carries the same instant.
local NOW = nil
local function now_ms()
  if NOW == nil then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

-- Shared sorted sets (indexes, active set, queue) live as long as their longest-lived member.
local function keep_until(key, at)
  local pttl = redis.call('PTTL', key)
  if pttl == -2 then return end
  if pttl == -1 or now_ms() + pttl < at then
    redis.call('PEXPIREAT', key, at)
  end
end

-- All keys of a task expire at the same instant, recorded in the record's `expires` field.
-- The listing indexes that hold the task are extended with it, or a task that finishes (or runs)
-- past its creation-time expiry would vanish from listings while it can still be fetched.
local function expire_task(at)
  redis.call('HSET', KEYS[1], 'expires', at)
  for i = 1, 5 do
    redis.call('PEXPIREAT', KEYS[i], at)
  end
  local id = redis.call('HGET', KEYS[1], 'id')
  if not id then return end
  local ns = string.sub(KEYS[1], 1, #KEYS[1] - #id - #':task:')
  keep_until(ns .. ':index', at)
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner then keep_until(ns .. ':index:owner:' .. owner, at) end
  local session = redis.call('HGET', KEYS[1], 'session')
  if session then keep_until(ns .. ':index:session:' .. session, at) end
end

local function fields(key)
  return redis.call('HGETALL', key)
end

-- Append to the capped event stream and publish the same event to the task's channel.
local function emit(channel, maxlen, event)
  event['at'] = now_ms()
  local payload = cjson.encode(event)
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'e', payload)
  local expires = redis.call('HGET', KEYS[1], 'expires')
  if expires then redis.call('PEXPIREAT', KEYS[2], expires) end
  redis.call('PUBLISH', channel, payload)
  return id
end

-- Move a task to a terminal status: outcome, expiry reset (TTL counts again from now), lease
-- and outstanding input requests dropped, event published.
local function finish(task_id, status, message, result, err, active_key, channel, maxlen)
  local now = now_ms()
  redis.call('HSET', KEYS[1], 'status', status, 'updated', now)
  if message ~= nil then redis.call('HSET', KEYS[1], 'msg', message) end
  if result ~= nil and result ~= '' then redis.call('HSET', KEYS[1], 'result', result) end
  if err ~= nil and err ~= '' then redis.call('HSET', KEYS[1], 'error', err) end
  if status == 'cancelled' then redis.call('HDEL', KEYS[1], 'result') end
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
  redis.call('DEL', KEYS[4])
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl'))
  expire_task(now + ttl)
  redis.call('ZREM', active_key, task_id)
  emit(channel, maxlen, { type = 'status', task_id = task_id, status = status,
                          message = redis.call('HGET', KEYS[1], 'msg') or cjson.null })
end
