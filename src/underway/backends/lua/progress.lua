-- Store a running job's progress for the lease holder. ARGV: prefix, id, token, progress,
-- message (optional). Returns 1 if applied, else 0.
local id, token, progress, message = ARGV[2], ARGV[3], ARGV[4], opt(ARGV[5])
local key = job_key(id)
local f = redis.call('HMGET', key, 'status', 'lease_token')
if f[1] ~= 'running' or f[2] ~= token then
  return 0
end
redis.call('HSET', key, 'progress', progress)
put(key, 'progress_message', message)
return 1
