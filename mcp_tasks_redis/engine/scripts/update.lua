-- The general change behind the mcp SDK's TaskStore: status and/or message, result, error,
-- written together. Refuses any change to a finished task and any transition the state machine
-- does not allow; with a fence, refuses a worker that no longer holds the task.
-- KEYS: 1 record, 2-4 dispatch streams (high, normal, low)
-- ARGV: 1 task id, 2 new status ('' = keep), 3 fence ('' = none), 4 now ms, 5 channel,
--       6 consumer group, 7 '1' if a message is given, 8 message, 9 result JSON, 10 error JSON,
--       11 largest outcome (bytes) an event carries
local cur = redis.call('HMGET', KEYS[1], 'st', 'r', 'q', 'msg', 'pl')
if not cur[1] then return redis.error_reply('NOT_FOUND') end
local st, new = cur[1], ARGV[2]
if TERMINAL[st] then return redis.error_reply('TERMINAL ' .. st) end
if ARGV[3] ~= '' and cur[2] ~= ARGV[3] then return redis.error_reply('LEASE_LOST') end
if new == '' then new = st end
if new ~= st then
  local ok = TERMINAL[new] or (st == 'working' and new == 'input_required')
             or (st == 'input_required' and new == 'working')
  if not ok then return redis.error_reply('TRANSITION ' .. st .. ' ' .. new) end
end
local msg = cur[4] or ''
if ARGV[7] == '1' then msg = ARGV[8] end
local fields = push({}, 'st', new, 'u', ARGV[4], 'msg', msg)
if ARGV[9] ~= '' then push(fields, 'res', ARGV[9]) end
if ARGV[10] ~= '' then push(fields, 'err', ARGV[10]) end
redis.call('HSET', KEYS[1], unpack(fields))
-- A cancel wins over an outcome staged before it: nothing of the abandoned run stays readable.
if new == 'cancelled' and new ~= st then redis.call('HDEL', KEYS[1], 'res', 'err') end
if TERMINAL[new] then drop_entry(level_stream(2, cur[5]), ARGV[6], cur[3]) end
local event = { k = 'status', st = new, msg = msg, u = tonumber(ARGV[4]) }
local head = cjson.encode(event)
local extra = ''
if #ARGV[9] + #ARGV[10] > tonumber(ARGV[11]) then
  extra = ',"big":1'
else
  if ARGV[9] ~= '' then extra = extra .. ',"res":' .. ARGV[9] end
  if ARGV[10] ~= '' then extra = extra .. ',"err":' .. ARGV[10] end
end
redis.call('PUBLISH', ARGV[5], ARGV[1] .. ' ' .. string.sub(head, 1, -2) .. extra .. '}')
return new
