-- The client answers input requests, on whichever replica: each answer to an outstanding
-- request is stored under its key and published to the waiting worker; unknown or already
-- answered keys are ignored. With nothing left outstanding the task is working again.
-- KEYS: 1 record
-- ARGV: 1 task id, 2 now ms, 3 channel, then key/answer-JSON pairs
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return redis.error_reply('NOT_FOUND') end
if TERMINAL[st] then return {} end
local has = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do has[f] = true end
local accepted, writes, parts = {}, {}, {}
for i = 4, #ARGV, 2 do
  local key = ARGV[i]
  if has['in:' .. key] and not has['ans:' .. key] then
    has['ans:' .. key] = true
    accepted[#accepted + 1] = key
    push(writes, 'ans:' .. key, ARGV[i + 1])
    parts[#parts + 1] = cjson.encode(key) .. ':' .. ARGV[i + 1]
  end
end
if #accepted == 0 then return {} end
local outstanding = false
for f in pairs(has) do
  if string.sub(f, 1, 3) == 'in:' and not has['ans:' .. string.sub(f, 4)] then outstanding = true end
end
if not outstanding and st == 'input_required' then
  st = 'working'
  push(writes, 'st', st, 'u', ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(writes))
redis.call('PUBLISH', ARGV[3], ARGV[1] .. ' {"k":"answered","st":"' .. st .. '","u":' .. ARGV[2]
  .. ',"replies":{' .. table.concat(parts, ',') .. '}}')
return accepted
