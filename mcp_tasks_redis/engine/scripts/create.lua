-- Create a task: its record, its job and its listing index entries, in one step, so that an id
-- handed to a client always resolves and a task never exists without its job. The job is an
-- entry in the shard's dispatch stream, or, for a keyed dispatcher (engine/keyed.py, e.g. arq),
-- a payload under its own key plus the task id in that dispatcher's sorted-set queue. The record
-- expires with the task (TTL plus grace), set once, here.
-- With per-owner quotas, the task runs at once only while its owner has fewer than the limit
-- running; else it waits in the owner's queue, from which `admit` dispatches it in turn.
-- KEYS: 1 record, 2 dispatch stream (keyed: the job's key), 3 keyed: the queue (else the stream
--       again), 4 owner's running set, 5 owner's queue, 6 owner's rate counter, 7 the shard's set
--       of owners with queued tasks, 8.. listing indexes
-- ARGV: 1 task id, 2 expiry ms (ttl + grace), 3 quota ('' = none, else "max running,max queued,
--       rate per window,window ms,owner key"), 4 dispatch: '0' none, '1' stream, 'k' keyed,
--       5 '1' to refuse an existing id, 6 '1' to (re)set the indexes' expiry, 7 index expiry ms,
--       8 number M of dispatch values (stream: the entry's field/value pairs; keyed: the
--       payload), 9..8+M those values, then the record's field/value pairs
local id = ARGV[1]
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS')
end
local mode = ARGV[4]
local dispatch, queued = mode ~= '0', nil
if ARGV[3] ~= '' then
  local max_running, max_queued, rate, window, owner =
    string.match(ARGV[3], '^(%d+),(%d+),(%d+),(%d+),(.*)$')
  if tonumber(rate) > 0 then
    local made = redis.call('INCR', KEYS[6])
    if made == 1 then redis.call('PEXPIRE', KEYS[6], window) end
    if made > tonumber(rate) then
      return redis.error_reply('RATE ' .. redis.call('PTTL', KEYS[6]))
    end
  end
  local now = redis.call('TIME')[1] * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)  -- tasks gone without saying so
  if redis.call('ZCARD', KEYS[4]) >= tonumber(max_running) then
    queued = redis.call('LLEN', KEYS[5])
    if queued >= tonumber(max_queued) then return redis.error_reply('QUEUE_FULL ' .. queued) end
    dispatch = false
    redis.call('RPUSH', KEYS[5], id)
    redis.call('PEXPIRE', KEYS[5], ARGV[2])
    redis.call('ZADD', KEYS[7], now, owner)
    redis.call('PEXPIRE', KEYS[7], ARGV[2])
  else
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), id)
    redis.call('PEXPIRE', KEYS[4], ARGV[2])
  end
end
local created, score, entry = 0, 0, ''
local m = tonumber(ARGV[8])
if dispatch and mode == '1' then
  -- The entry id is Redis' own clock: it is the task's creation time and, with its sequence
  -- number, a listing score unique and increasing within the shard.
  entry = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 9, 8 + m))
  local dash = string.find(entry, '-', 1, true)
  created = tonumber(string.sub(entry, 1, dash - 1))
  score = created * 1000 + tonumber(string.sub(entry, dash + 1))
else
  local t = redis.call('TIME')
  created = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  score = tonumber(t[1]) * 1000000 + tonumber(t[2])
  -- Without a stream entry to order them, tasks created within one microsecond keep their
  -- creation order by a score just above the newest one listed.
  if KEYS[8] then
    local top = redis.call('ZREVRANGE', KEYS[8], 0, 0, 'WITHSCORES')
    if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
  end
  if dispatch then
    -- A keyed dispatcher's job lives as long as the record; its queue is scored by creation.
    redis.call('SET', KEYS[2], ARGV[9], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[3], created, id)
  end
end
local fields = push({}, 'c', created, 'u', created, 'q', entry)
for i = 9 + m, #ARGV do fields[#fields + 1] = ARGV[i] end
if queued then
  push(fields, 'msg', 'Queued: ' .. queued .. ' earlier task(s) of this caller wait to run')
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 8, #KEYS do
  redis.call('ZADD', KEYS[i], score, id)
  if ARGV[6] == '1' then redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
end
return { created, entry }
