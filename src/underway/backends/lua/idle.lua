-- A worker with free slots starts to wait for work: unless a job of its queues is due, it
-- is registered as idle on them, so that enqueues hand it their jobs (see lib.lua).
-- ARGV: prefix, now, worker, free, lease (us), until (us: when its wait ends), queue...
-- Returns 1 if a job is due or something was handed to the worker already (nothing is
-- registered), else the earliest scheduled_at among the queues (a string), else 0.
local now, worker, free, lease, ends = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local earliest = nil
for i = 7, #ARGV do
  local q = ARGV[i]
  if redis.call('EXISTS', P .. ':queue:' .. q) == 1 then
    return 1
  end
  local first = redis.call('ZRANGE', P .. ':scheduled:' .. q, 0, 0, 'WITHSCORES')
  if first[2] then
    if tonumber(first[2]) <= tonumber(now) then
      return 1
    end
    if earliest == nil or tonumber(first[2]) < tonumber(earliest) then
      earliest = first[2]
    end
  end
end
if redis.call('EXISTS', P .. ':handoff:' .. worker) == 1 then
  return 1
end
unregister_idle(worker)
local queues = {}
for i = 7, #ARGV do
  queues[#queues + 1] = ARGV[i]
  redis.call('ZADD', P .. ':idle:' .. ARGV[i], ends, worker)
end
redis.call('HSET', P .. ':idler:' .. worker, 'free', free, 'lease', lease, 'queues',
  cjson.encode(queues))
return earliest or 0
