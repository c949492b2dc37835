-- Record the outcomes of finished runs; each applies only while the job is running with the
-- lease's token. ARGV: prefix, now, nonce, count, then 7 per release: id, token, kind, and
-- the optional result, error, traceback and extra (retry_at for retry, reason for dead).
-- Returns per release 1 (applied, now or by an earlier try of this call) or 0 (refused).
local now, nonce, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local running = P .. ':running'
local out = {}

for j = 0, count - 1 do
  local b = 5 + j * 7
  local id, token, kind = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'status', 'lease_token', 'released_by', 'attempts',
    'max_attempts', 'queue', 'unique_key', 'priority', 'scheduled_at', 'seq')
  if f[1] ~= 'running' or f[2] ~= token then
    if f[3] == token .. ' ' .. nonce then
      out[j + 1] = 1 -- this release was applied before its reply was lost
    else
      out[j + 1] = 0
    end
  else
    local result, err, tb, extra = opt(ARGV[b + 3]), opt(ARGV[b + 4]), opt(ARGV[b + 5]),
      opt(ARGV[b + 6])
    local attempts, q, unique_key = tonumber(f[4]), f[6], f[7]
    redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
    redis.call('HSET', key, 'released_by', token .. ' ' .. nonce)
    redis.call('ZREM', running, id)
    if kind == 'success' then
      put(key, 'result', result)
      redis.call('HSET', key, 'status', 'succeeded', 'finished_at', now)
      finish(id, q, 'succeeded', unique_key, now)
    elseif kind == 'failure' then
      put(key, 'error', err)
      put(key, 'traceback', tb)
      if attempts >= tonumber(f[5]) then
        redis.call('HSET', key, 'status', 'dead', 'finished_at', now, 'dead_reason',
          exhausted(attempts, 'the task failed'))
        finish(id, q, 'dead', unique_key, now)
      else
        redis.call('HSET', key, 'status', 'failed', 'finished_at', now)
        finish(id, q, 'failed', unique_key, now)
      end
    elseif kind == 'retry' then
      put(key, 'error', err)
      put(key, 'traceback', tb)
      if tonumber(extra) > tonumber(now) then
        redis.call('HSET', key, 'status', 'scheduled', 'scheduled_at', extra)
        scheduled_add(q, extra, id)
      else
        redis.call('HSET', key, 'status', 'queued', 'scheduled_at', extra)
        due_add(q, f[8], extra, f[10], id)
      end
    elseif kind == 'cancelled' then
      redis.call('HSET', key, 'status', 'cancelled', 'finished_at', now)
      finish(id, q, 'cancelled', unique_key, now)
    elseif kind == 'dead' then
      put(key, 'dead_reason', extra)
      put(key, 'error', err)
      put(key, 'traceback', tb)
      redis.call('HSET', key, 'status', 'dead', 'finished_at', now)
      finish(id, q, 'dead', unique_key, now)
    else -- requeue: the run did not happen
      local left = attempts - 1
      if left < 0 then
        left = 0
      end
      redis.call('HSET', key, 'status', 'queued', 'attempts', int(left))
      due_add(q, f[8], f[9], f[10], id)
    end
    out[j + 1] = 1
  end
end
publish_wakes()
return out
