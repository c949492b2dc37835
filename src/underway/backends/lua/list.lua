-- A page of jobs, newest first, filtered on queue, reported status and task name.
-- ARGV: prefix, now, cursor ('+inf' or '(' .. seq), budget, skip, want, and the optional
-- queue, status and task_name. Examines at most `budget` jobs per call.
-- Returns {next cursor or '' when done, skip left, records...}.
local now, cursor, budget = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local skip, want = tonumber(ARGV[5]), tonumber(ARGV[6])
local queue, status, task = opt(ARGV[7]), opt(ARGV[8]), opt(ARGV[9])
local found = redis.call('ZREVRANGEBYSCORE', P .. ':jobs', cursor, '-inf', 'WITHSCORES',
  'LIMIT', 0, budget)
local out = { '', 0 }
for i = 1, #found, 2 do
  local id = found[i]
  local key = job_key(id)
  local matches = true
  if queue or status or task then
    local f = redis.call('HMGET', key, 'queue', 'status', 'task_name', 'scheduled_at')
    local reported = f[2]
    if reported == 'scheduled' and tonumber(f[4]) and tonumber(f[4]) <= now then
      reported = 'queued'
    end
    matches = (not queue or f[1] == queue) and (not status or reported == status)
      and (not task or f[3] == task)
  end
  if matches then
    if skip > 0 then
      skip = skip - 1
    else
      out[#out + 1] = record(key)
      want = want - 1
      if want == 0 then
        out[1] = '(' .. found[i + 1]
        break
      end
    end
  end
end
if want > 0 and #found == 2 * budget then
  out[1] = '(' .. found[#found]
end
out[2] = skip
return out
