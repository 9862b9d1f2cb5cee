-- Create a task: record, listing indexes, active set and (optionally) its arq job, atomically,
-- so that an id handed to a client always resolves and a task never exists without its job.
-- KEYS: 1-5 per-task, 6 active, 7 arq queue, 8 arq job key, 9 the namespace's listing index,
--       10.. the owner's and session's listing indexes
-- ARGV: 1 task id, 2 ttl ms, 3 poll ms, 4 grace ms, 5 job payload ('' = no job),
--       6 wake channel, 7 lease ms, 8.. field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS')
end
local id, ttl, poll, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
redis.call('HSET', KEYS[1], 'id', id, 'status', 'working', 'created', now, 'updated', now,
           'ttl', ttl, 'poll', poll, 'attempt', 0)
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
-- An unfinished task outlives its TTL by `grace`, so a reaper can still fail it visibly.
local expires = now + ttl + grace
expire_task(expires)
-- Listing order: a score above every task already listed (microsecond-scaled creation time,
-- bumped on a tie), so tasks created in the same millisecond still sort by creation and a
-- listing cursor can never let a task created after it into the pages that follow.
local score = now * 1000
local top = redis.call('ZREVRANGE', KEYS[9], 0, 0, 'WITHSCORES')
if top[2] ~= nil and tonumber(top[2]) >= score then
  score = tonumber(top[2]) + 1
end
for i = 9, #KEYS do
  redis.call('ZADD', KEYS[i], score, id)
  keep_until(KEYS[i], expires)
end
-- The reaper looks at a dispatched task after one lease even if no worker claimed it: a worker
-- may have died between arq's pickup of the job and its claim (see reap.lua).
local check = now + ttl
if ARGV[5] ~= '' then check = math.min(check, now + tonumber(ARGV[7])) end
redis.call('ZADD', KEYS[6], check, id)
keep_until(KEYS[6], expires)
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[8], ARGV[5], 'PX', ttl + grace)
  redis.call('ZADD', KEYS[7], now, id)
  keep_until(KEYS[7], expires)
  redis.call('PUBLISH', ARGV[6], id)
end
return fields(KEYS[1])
