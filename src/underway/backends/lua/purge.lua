-- Delete finished jobs of the given statuses that finished before the cutoff, at most
-- `limit` of them. ARGV: prefix, cutoff, limit, status... Returns how many were deleted.
local cutoff, limit = ARGV[2], tonumber(ARGV[3])
local deleted = 0
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  for i = 4, #ARGV do
    local status = ARGV[i]
    local fkey = P .. ':finished:' .. q .. ':' .. status
    local ids = redis.call('ZRANGEBYSCORE', fkey, '-inf', '(' .. cutoff, 'LIMIT', 0,
      limit - deleted)
    for _, id in ipairs(ids) do
      redis.call('ZREM', fkey, id)
      if redis.call('HGET', job_key(id), 'status') == status then
        redis.call('DEL', job_key(id))
        redis.call('ZREM', P .. ':jobs', id)
        deleted = deleted + 1
      end
    end
    if deleted >= limit then
      return deleted
    end
  end
end
return deleted
