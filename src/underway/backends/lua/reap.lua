-- Return running jobs whose lease expired before now to their queue, or to dead when their
-- attempts are used up. ARGV: prefix, now, limit, reason text.
-- Returns {how many leases were examined, changed records...}.
local now, limit, what = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local running = P .. ':running'
local ids = redis.call('ZRANGEBYSCORE', running, '-inf', '(' .. now, 'LIMIT', 0, limit)
local out = { #ids }
for _, id in ipairs(ids) do
  redis.call('ZREM', running, id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'status', 'attempts', 'max_attempts', 'queue',
    'unique_key', 'priority', 'seq')
  local attempts, max_attempts = tonumber(f[2]), tonumber(f[3])
  if f[1] == 'running' and attempts and max_attempts and f[4] then
    redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
    if attempts >= max_attempts then
      redis.call('HSET', key, 'status', 'dead', 'finished_at', now, 'dead_reason',
        exhausted(attempts, what))
      finish(id, f[4], 'dead', f[5], now)
    else
      redis.call('HSET', key, 'status', 'queued', 'scheduled_at', now)
      due_add(f[4], f[6], now, f[7], id)
    end
    out[#out + 1] = record(key)
  end
end
publish_wakes()
return out
