-- One worker renews the leases of all its running tasks in one shard: the pending entries it
-- owns get their idle time reset. Entries it no longer owns (cancelled, or reclaimed from it
-- after it stalled past the lease) are returned, so that it stops those tools.
-- KEYS: 1 dispatch stream
-- ARGV: 1 consumer group, 2 consumer (worker id), 3.. the entry ids it runs
local mine = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000, ARGV[2])) do
  mine[p[1]] = true
end
local keep, lost = {}, {}
for i = 3, #ARGV do
  if mine[ARGV[i]] then keep[#keep + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #keep > 0 then
  -- JUSTID: a renewal is no new delivery, so the delivery counter stays as it is.
  local args = push({ KEYS[1], ARGV[1], ARGV[2], 0 }, unpack(keep))
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return lost
