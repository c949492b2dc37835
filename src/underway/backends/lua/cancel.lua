-- Cancel a job: a waiting one at once, a running one by flagging it for its worker.
-- ARGV: prefix, now, id. Returns the record as changed, or nil if there is no such job.
local now, id = ARGV[2], ARGV[3]
local key = job_key(id)
if redis.call('EXISTS', key) == 0 then
  return false
end
local f = redis.call('HMGET', key, 'status', 'queue', 'scheduled_at', 'seq', 'unique_key')
if (f[1] == 'queued' or f[1] == 'scheduled') and f[2] then
  unwait(id, f[2], f[3], f[4])
  redis.call('HSET', key, 'status', 'cancelled', 'finished_at', now)
  finish(id, f[2], 'cancelled', f[5], now)
elseif f[1] == 'running' then
  redis.call('HSET', key, 'cancel_requested', '1')
end
return record(key)
