-- A running tool asks the client for input: the request is stored under its key and the task
-- goes input_required; with a fence, only while the worker's run is the task's run.
-- KEYS: 1 record
-- ARGV: 1 task id, 2 run fence ('' = none), 3 request key, 4 request JSON, 5 now ms, 6 channel
local cur = redis.call('HMGET', KEYS[1], 'st', 'r')
if not cur[1] then return redis.error_reply('NOT_FOUND') end
if TERMINAL[cur[1]] then return redis.error_reply('TERMINAL ' .. cur[1]) end
if ARGV[2] ~= '' and cur[2] ~= ARGV[2] then return redis.error_reply('LEASE_LOST') end
redis.call('HSET', KEYS[1], 'in:' .. ARGV[3], ARGV[4], 'st', 'input_required', 'u', ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[1] .. ' {"k":"input","u":' .. ARGV[5] .. ',"key":'
  .. cjson.encode(ARGV[3]) .. ',"req":' .. ARGV[4] .. '}')
return 'ok'
