-- Is a job of these queues due? ARGV: prefix, now, queue...
-- Returns 1 if one is, else the earliest scheduled_at among them (a string), else 0.
local now = tonumber(ARGV[2])
local earliest = nil
for i = 3, #ARGV do
  local q = ARGV[i]
  if redis.call('EXISTS', P .. ':queue:' .. q) == 1 then
    return 1
  end
  local first = redis.call('ZRANGE', P .. ':scheduled:' .. q, 0, 0, 'WITHSCORES')
  if first[2] then
    local at = tonumber(first[2])
    if at <= now then
      return 1
    end
    if earliest == nil or at < tonumber(earliest) then
      earliest = first[2]
    end
  end
end
if earliest then
  return earliest
end
return 0
