-- Cancel an unfinished task: status written, its job acknowledged and removed (a queued job is
-- never delivered; a running one's worker sees its lease gone), the event published.
-- KEYS: 1 record, 2-4 dispatch streams (high, normal, low)
-- ARGV: 1 task id, 2 message, 3 now ms, 4 channel, 5 consumer group
local cur = redis.call('HMGET', KEYS[1], 'st', 'q', 'pl', 'qo')
if not cur[1] then return redis.error_reply('NOT_FOUND') end
if TERMINAL[cur[1]] then return redis.error_reply('TERMINAL ' .. cur[1]) end
redis.call('HSET', KEYS[1], 'st', 'cancelled', 'msg', ARGV[2], 'u', ARGV[3])
-- A result staged through the SDK's store_result before the cancel never becomes the outcome.
redis.call('HDEL', KEYS[1], 'res')
drop_entry(level_stream(2, cur[3]), ARGV[5], cur[2])
redis.call('PUBLISH', ARGV[4], status_event(ARGV[1], 'cancelled', ARGV[2], ARGV[3]))
-- The status it had, and the quota owner whose place the caller gives up (engine/quotas.py).
return { cur[1], cur[4] or '' }
