-- Record the outcomes of finished runs; each applies only while the job is running with the
-- lease's token. ARGV: prefix, now, nonce, count, then 7 per release: id, token, kind, and
-- the optional result, error, traceback and extra (retry_at for retry, reason for dead).
-- Returns per release 1 (applied, now or by an earlier try of this call) or 0 (refused).
local now, nonce, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local running = P .. ':running'
local out = {}
-- The changes of the job being released, written with one HSET and one HDEL.
local sets, dels
local function set(field, value)
  if value then
    sets[#sets + 1] = field
    sets[#sets + 1] = value
  else
    dels[#dels + 1] = field
  end
end

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
    -- Writes that free memory first: a full server (noeviction) refuses a script whose
    -- first write would grow it, and workers must still be able to record outcomes.
    redis.call('ZREM', running, id)
    redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
    sets, dels = { 'released_by', token .. ' ' .. nonce }, {}
    local final = nil
    if kind == 'success' then
      set('result', result)
      final = 'succeeded'
    elseif kind == 'failure' then
      set('error', err)
      set('traceback', tb)
      if attempts >= tonumber(f[5]) then
        set('dead_reason', exhausted(attempts, 'the task failed'))
        final = 'dead'
      else
        final = 'failed'
      end
    elseif kind == 'retry' then
      set('error', err)
      set('traceback', tb)
      set('scheduled_at', extra)
      if tonumber(extra) > tonumber(now) then
        set('status', 'scheduled')
        scheduled_add(q, extra, id)
      else
        set('status', 'queued')
        due_add(q, f[8], extra, f[10], id)
      end
    elseif kind == 'cancelled' then
      final = 'cancelled'
    elseif kind == 'dead' then
      set('dead_reason', extra)
      set('error', err)
      set('traceback', tb)
      final = 'dead'
    else -- requeue: the run did not happen
      local left = attempts - 1
      if left < 0 then
        left = 0
      end
      set('status', 'queued')
      set('attempts', int(left))
      due_add(q, f[8], f[9], f[10], id)
    end
    if final then
      set('status', final)
      set('finished_at', now)
      finish(id, q, final, unique_key, now)
    end
    redis.call('HSET', key, unpack(sets))
    if #dels > 0 then
      redis.call('HDEL', key, unpack(dels))
    end
    out[j + 1] = 1
  end
end
publish_wakes()
return out
