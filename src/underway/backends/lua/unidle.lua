-- A worker stops waiting before its wait ended (it is stopping): unregister it, take what
-- was handed to it, and wake its blocking read. ARGV: prefix, worker.
-- Returns the items handed to it ('token record' per job; '' for a wake).
local worker = ARGV[2]
local key = P .. ':handoff:' .. worker
unregister_idle(worker)
local items = redis.call('LRANGE', key, 0, -1)
redis.call('DEL', key)
redis.call('RPUSH', key, '')
return items
