-- An operator's retry: a failed, dead or cancelled job runs again from zero attempts,
-- unless its unique key is held by an active job. ARGV: prefix, now, id.
-- Returns the record (changed or not), or nil if there is no such job.
local now, id = ARGV[2], ARGV[3]
local key = job_key(id)
if redis.call('EXISTS', key) == 0 then
  return false
end
local f = redis.call('HMGET', key, 'status', 'queue', 'priority', 'seq', 'unique_key')
local status, q, unique_key = f[1], f[2], f[5]
if status == 'succeeded' or not FINISHED[status] or not q then
  return record(key)
end
if unique_key then
  local other = redis.call('HGET', P .. ':unique', unique_key)
  if other and other ~= id and ACTIVE[redis.call('HGET', job_key(other), 'status')] then
    return record(key)
  end
  redis.call('HSET', P .. ':unique', unique_key, id)
end
redis.call('ZREM', P .. ':finished:' .. q .. ':' .. status, id)
redis.call('HSET', key, 'status', 'queued', 'scheduled_at', now, 'attempts', '0')
redis.call('HDEL', key, 'result', 'error', 'traceback', 'progress', 'progress_message',
  'cancel_requested', 'dead_reason', 'started_at', 'finished_at')
due_add(q, f[3], now, f[4], id)
publish_wakes()
return record(key)
