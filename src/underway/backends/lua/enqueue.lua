-- Store a batch of new jobs, all or none.
-- ARGV: prefix, now, nonce, count, then NEW_FIELDS per job.
-- Returns per job 0 (stored, or stored by an earlier try of this call) or the record of
-- the active job holding its unique key.
local now, nonce, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local stored = {}
for j = 0, count - 1 do
  local done = check_new(5 + j * NEW_FIELDS, nonce)
  if type(done) == 'table' then
    return done
  end
  stored[j] = done
end
local base = redis.call('INCRBY', P .. ':seq', count) - count
local out = {}
for j = 0, count - 1 do
  if stored[j] then
    out[j + 1] = 0
  else
    out[j + 1] = insert(5 + j * NEW_FIELDS, now, nonce, int(base + j + 1))
  end
end
publish_wakes()
return out
