-- Remove workers whose last heartbeat is before the cutoff. ARGV: prefix, cutoff.
-- Returns how many were removed.
local ids = redis.call('ZRANGEBYSCORE', P .. ':heartbeats', '-inf', '(' .. ARGV[2])
for _, id in ipairs(ids) do
  redis.call('HDEL', P .. ':workers', id)
  redis.call('ZREM', P .. ':heartbeats', id)
  redis.call('DEL', P .. ':acquired:' .. id, P .. ':handoff:' .. id)
  unregister_idle(id)
end
return #ids
