-- Move an unfinished job to dead with a reason, clearing any lease.
-- ARGV: prefix, now, id, reason. Returns the record as changed, or nil.
local now, id, reason = ARGV[2], ARGV[3], ARGV[4]
local key = job_key(id)
if redis.call('EXISTS', key) == 0 then
  return false
end
local f = redis.call('HMGET', key, 'status', 'queue', 'scheduled_at', 'seq', 'unique_key')
if not FINISHED[f[1]] then
  local q = f[2] or ''
  unwait(id, q, f[3], f[4])
  redis.call('ZREM', P .. ':running', id)
  redis.call('HSET', key, 'status', 'dead', 'dead_reason', reason, 'finished_at', now)
  redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
  finish(id, q, 'dead', f[5], now)
end
return record(key)
