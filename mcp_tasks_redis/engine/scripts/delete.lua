-- Delete a task and every trace of it: record, job, inbox, listing index entries.
-- KEYS: 1 record, 2-4 dispatch streams (high, normal, low), 5 inbox, 6 delayed set,
--       7.. listing indexes holding it
-- ARGV: 1 task id, 2 consumer group
local cur = redis.call('HMGET', KEYS[1], 'q', 'pl')
local existed = redis.call('DEL', KEYS[1], KEYS[5])
drop_entry(level_stream(2, cur[2]), ARGV[2], cur[1])
redis.call('ZREM', KEYS[6], ARGV[1])
for i = 7, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return existed
