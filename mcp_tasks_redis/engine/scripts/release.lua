-- A task of a quota-bound owner ended (or was cancelled while it waited): its place among the
-- owner's running tasks, or in the owner's queue, is given up. Returns the queue's head, if any,
-- for the caller to admit.
-- KEYS: 1 owner's running set, 2 owner's queue, 3 the shard's set of owners with queued tasks
-- ARGV: 1 task id, 2 owner key
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('LREM', KEYS[2], 0, ARGV[1]) > 0 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return redis.call('LINDEX', KEYS[2], 0)
