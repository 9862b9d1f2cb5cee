-- Store a running task's progress snapshot and publish it. Progress lives in its own field, so it
-- needs no status check: on a task that finished meanwhile it changes nothing a reader sees.
-- HSET answers how many fields are new; `id` is in every record, so 2 means there was no record
-- (expired or deleted): the stray hash is removed again and nothing is published.
-- KEYS: 1 record
-- ARGV: 1 task id, 2 progress JSON, 3 channel, 4 event payload
if redis.call('HSET', KEYS[1], 'id', ARGV[1], 'p', ARGV[2]) == 2 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
