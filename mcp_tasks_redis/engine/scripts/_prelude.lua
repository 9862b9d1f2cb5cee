-- Shared by every script (prepended by engine/lua.py).
-- Every key a script touches arrives in KEYS: one task's keys and its shard's structures share
-- one hash tag, so each script runs on one Redis Cluster slot.
local TERMINAL = { completed = true, failed = true, cancelled = true }

-- Append field/value pairs to a table that will be unpacked into one HSET or XADD.
local function push(t, ...)
  for _, v in ipairs({ ... }) do t[#t + 1] = v end
  return t
end

-- The dispatch stream of a task's priority level, from KEYS[first..first+2] (high, normal, low).
local function level_stream(first, level)
  return KEYS[first + (tonumber(level) or 1)]
end

-- Acknowledge and remove a dispatch stream entry (a no-op for one already gone).
local function drop_entry(stream, group, entry)
  if entry and entry ~= '' then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
  end
end

-- A status event, built here for the paths where the caller cannot know the outcome beforehand.
local function status_event(id, st, msg, now)
  return id .. ' ' .. cjson.encode({ k = 'status', st = st, msg = msg, u = tonumber(now) })
end
