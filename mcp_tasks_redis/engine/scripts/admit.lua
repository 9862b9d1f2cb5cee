-- Dispatch the first task of an owner's queue, if the owner now runs fewer than its limit.
-- Called with the id found at the head of the queue, so that its record can be a declared key;
-- a task that finished (cancelled, expired) while it waited is dropped from the queue.
-- KEYS: 1 the task's record, 2-4 dispatch streams (high, normal, low), 5 owner's running set,
--       6 owner's queue, 7 the shard's set of owners with queued tasks
-- ARGV: 1 task id, 2 max running, 3 owner key, 4 channel, 5 running-set expiry ms
-- Returns {outcome, the queue's new head, or false when there is none or the owner is at its limit}.
local id = ARGV[1]
if redis.call('LINDEX', KEYS[6], 0) ~= id then return { 'moved', redis.call('LINDEX', KEYS[6], 0) } end
local now = redis.call('TIME')[1] * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[2]) then return { 'full', false } end
redis.call('LPOP', KEYS[6])
local head = redis.call('LINDEX', KEYS[6], 0)
if not head then redis.call('ZREM', KEYS[7], ARGV[3]) end
local cur = redis.call('HMGET', KEYS[1], 'st', 'r', 'a', 'c', 'ttl', 'tool', 'own', 'ses', 'job', 'pl', 'q')
if not cur[1] or TERMINAL[cur[1]] or (cur[11] and cur[11] ~= '') then return { 'dropped', head } end
local entry = push({}, 'id', id, 'r', cur[2], 'a', cur[3], 'c', cur[4], 'ttl', cur[5], 'job', cur[9])
if cur[6] then push(entry, 'tool', cur[6]) end
if cur[7] then push(entry, 'own', cur[7]) end
if cur[8] then push(entry, 'ses', cur[8]) end
local q = redis.call('XADD', level_stream(2, cur[10]), '*', unpack(entry))
redis.call('HSET', KEYS[1], 'q', q, 'msg', '', 'u', now)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[5]), id)
redis.call('PEXPIRE', KEYS[5], ARGV[5])
redis.call('PUBLISH', ARGV[4], status_event(id, cur[1], cjson.null, now))
-- At its limit now, the owner can start nothing more: no head, so the caller stops asking.
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[2]) then return { 'admitted', false } end
return { 'admitted', head }
