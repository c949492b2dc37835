-- Jobs per queue and reported status. ARGV: prefix, now.
-- Returns a flat list of queue, status, count.
local now = ARGV[2]
local running = {}
for _, id in ipairs(redis.call('ZRANGE', P .. ':running', 0, -1)) do
  local f = redis.call('HMGET', job_key(id), 'status', 'queue')
  if f[1] == 'running' and f[2] then
    running[f[2]] = (running[f[2]] or 0) + 1
  end
end
local out = {}
local function add(q, status, n)
  out[#out + 1] = q
  out[#out + 1] = status
  out[#out + 1] = n
end
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  local skey = P .. ':scheduled:' .. q
  add(q, 'queued', redis.call('ZCARD', P .. ':queue:' .. q) +
    redis.call('ZCOUNT', skey, '-inf', now))
  add(q, 'scheduled', redis.call('ZCOUNT', skey, '(' .. now, '+inf'))
  add(q, 'running', running[q] or 0)
  for _, status in ipairs({ 'succeeded', 'failed', 'cancelled', 'dead' }) do
    add(q, status, redis.call('ZCARD', P .. ':finished:' .. q .. ':' .. status))
  end
end
return out
