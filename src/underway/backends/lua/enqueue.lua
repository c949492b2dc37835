-- Store a batch of new jobs, all or none.
-- ARGV: prefix, now, nonce, count, then NEW_FIELDS per job.
-- Returns per job 0 (stored, or stored by an earlier try of this call) or the record of
-- the active job holding its unique key.
local now, nonce, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local stored = {}
-- Ids that exist already (a duplicate, or this call's own first try): one EXISTS per
-- chunk of the batch, and a look at each job only in a chunk where some exist.
for first = 0, count - 1, 500 do
  local last = math.min(first + 499, count - 1)
  local keys = {}
  for j = first, last do
    keys[#keys + 1] = job_key(ARGV[5 + j * NEW_FIELDS])
  end
  if redis.call('EXISTS', unpack(keys)) > 0 then
    for j = first, last do
      local done = check_new(5 + j * NEW_FIELDS, nonce)
      if type(done) == 'table' then
        return done
      end
      stored[j] = done
    end
  end
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
flush_later()
publish_wakes()
return out
