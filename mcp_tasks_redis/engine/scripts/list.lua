-- One page of a listing index, newest-first or oldest-first, after a (score, id) cursor.
-- Members whose task has expired are pruned on the way. Returns {score, record} pairs.
-- KEYS: 1 index
-- ARGV: 1 'desc' | 'asc', 2 page size, 3 cursor score ('' = from the start), 4 cursor id,
--       5 task key prefix
local desc, limit = ARGV[1] == 'desc', tonumber(ARGV[2])
local cscore, cid, prefix = ARGV[3], ARGV[4], ARGV[5]
local out = {}
local offset, batch = 0, limit + 1
local from = '+inf'
if cscore ~= '' then from = cscore end
while #out <= limit do
  local chunk
  if desc then
    chunk = redis.call('ZREVRANGEBYSCORE', KEYS[1], from, '-inf', 'WITHSCORES', 'LIMIT', offset, batch)
  else
    chunk = redis.call('ZRANGEBYSCORE', KEYS[1], cscore ~= '' and cscore or '-inf', '+inf',
                       'WITHSCORES', 'LIMIT', offset, batch)
  end
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    local member, score = chunk[i], chunk[i + 1]
    -- Members that share the cursor's score were already returned if they sort before it.
    local seen = cscore ~= '' and tonumber(score) == tonumber(cscore)
                 and ((desc and member >= cid) or ((not desc) and member <= cid))
    if not seen and #out <= limit then
      local record = redis.call('HGETALL', prefix .. member)
      if #record == 0 then
        redis.call('ZREM', KEYS[1], member)
        offset = offset - 1
      else
        out[#out + 1] = { score, record }
      end
    end
  end
  offset = offset + batch
end
return out
