-- Delete a task and every trace of it (record, streams, indexes, active set).
-- KEYS: 1-5 per-task, 6 active, 7 index
-- ARGV: 1 task id, 2 namespace
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner')
local session = redis.call('HGET', KEYS[1], 'session')
if owner then redis.call('ZREM', ARGV[2] .. ':index:owner:' .. owner, ARGV[1]) end
if session then redis.call('ZREM', ARGV[2] .. ':index:session:' .. session, ARGV[1]) end
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
for i = 1, 5 do redis.call('DEL', KEYS[i]) end
return 1
