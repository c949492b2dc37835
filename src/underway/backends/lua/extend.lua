-- Heartbeat: push the expiry of the worker's leases; refresh its registry entry.
-- ARGV: prefix, now, expires, worker, then id and token per lease.
-- Returns {lost ids, ids whose cancel was requested}.
local now, expires, worker = ARGV[2], ARGV[3], ARGV[4]
local lost, cancel = {}, {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'status', 'lease_token', 'cancel_requested')
  if f[1] == 'running' and f[2] == token then
    redis.call('HSET', key, 'lease_expires_at', expires)
    redis.call('ZADD', P .. ':running', expires, id)
    if f[3] then
      cancel[#cancel + 1] = id
    end
  else
    lost[#lost + 1] = id
  end
end
redis.call('ZADD', P .. ':heartbeats', 'XX', now, worker)
return { lost, cancel }
