-- Lease up to `limit` due jobs of the given queues to a worker.
-- ARGV: prefix, now, expires, worker, limit, nonce, queue...
-- Returns the leased jobs: first those handed to the worker while it waited, then the
-- ones chosen, in order: each an array of the values take() lists, or the whole record
-- as record() sends it (a handed job, and a retry's answer).
local now, expires, worker, limit, nonce = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local PROMOTE = 1000
local running = P .. ':running'
local record_key = P .. ':acquired:' .. worker
local out = {}

-- A retry of this call after a lost reply gets the jobs it leased, with a fresh expiry.
-- The record keeps the worker's last two calls: a worker may have two under way at once.
local KEEP = 2
local recent = {}
local last = redis.call('GET', record_key)
if last then
  recent = cjson.decode(last)
  if type(recent[1]) ~= 'table' then
    recent = { recent } -- written by an earlier version: one call, not a list of them
  end
  for _, done in ipairs(recent) do
    if done[1] == nonce then
      for i, id in ipairs(done[2]) do
        local key = job_key(id)
        local f = redis.call('HMGET', key, 'status', 'lease_token', 'lease_owner')
        if f[1] == 'running' and f[2] == done[3][i] and f[3] == worker then
          redis.call('HSET', key, 'lease_expires_at', expires)
          redis.call('ZADD', running, expires, id)
          out[#out + 1] = record(key)
        end
      end
      return out
    end
  end
end

local queues = {}
for i = 7, #ARGV do
  queues[#queues + 1] = ARGV[i]
end

local taken_ids, taken_tokens = {}, {}

-- First, the jobs enqueues handed to this worker while it waited: leased to it already.
unregister_idle(worker)
local handoff = P .. ':handoff:' .. worker
local handed = redis.call('LRANGE', handoff, 0, -1)
if #handed > 0 then
  redis.call('DEL', handoff)
  for _, item in ipairs(handed) do
    local space = string.find(item, ' ', 1, true)
    if space then -- not a wake
      local token, packed = string.sub(item, 1, space - 1), string.sub(item, space + 1)
      local head = string.find(packed, '\n', 1, true)
      local size = tonumber(string.match(packed, '^(%d+)'))
      local id = head and size and string.sub(packed, head + 1, head + size)
      local key = id and job_key(id)
      local f = key and redis.call('HMGET', key, 'status', 'lease_token', 'lease_owner')
      if f and f[1] == 'running' and f[2] == token and f[3] == worker then
        redis.call('HSET', key, 'lease_expires_at', expires)
        redis.call('ZADD', running, expires, id)
        out[#out + 1] = record(key)
        taken_ids[#taken_ids + 1] = id
        taken_tokens[#taken_tokens + 1] = token
      end
    end
  end
end

-- Scheduled jobs that came due join their queue's due set, ordered by their scheduled_at.
for _, q in ipairs(queues) do
  local skey = P .. ':scheduled:' .. q
  local ids = redis.call('ZRANGEBYSCORE', skey, '-inf', now, 'LIMIT', 0, PROMOTE)
  for _, id in ipairs(ids) do
    redis.call('ZREM', skey, id)
    local f = redis.call('HMGET', job_key(id), 'status', 'priority', 'scheduled_at', 'seq')
    if f[1] == 'scheduled' and tonumber(f[2]) and tonumber(f[3]) and tonumber(f[4]) then
      due_add(q, f[2], f[3], f[4], id)
    end
  end
end

-- The fields take() reads, and the positions among them of those that must be numbers.
local TAKE = { 'task_name', 'payload', 'status', 'priority', 'attempts', 'max_attempts',
  'enqueued_at', 'scheduled_at', 'lease_token', 'unique_key', 'error', 'traceback',
  'progress', 'progress_message', 'cancel_requested' }
local NUMERIC = { 4, 5, 6, 7, 8, 9 }

-- A record that cannot be decoded goes to dead with the reason, and is not returned.
local function bury(id, key, q, unique_key, reason)
  redis.call('HSET', key, 'status', 'dead', 'dead_reason', 'malformed record: ' .. reason,
    'finished_at', now)
  redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
  finish(id, q, 'dead', unique_key, now)
end

local leases = {} -- ZADD arguments for the running set: expiry, id, expiry, id...

local function take(id, q)
  local key = job_key(id)
  local v = redis.call('HMGET', key, unpack(TAKE))
  if v[3] ~= 'queued' and v[3] ~= 'scheduled' then
    return -- a stale entry: the job was purged, or changed by an operator
  end
  for i = 1, 2 do
    if not v[i] then
      return bury(id, key, q, v[10], 'the ' .. TAKE[i] .. ' field is missing')
    end
  end
  for _, i in ipairs(NUMERIC) do
    if not tonumber(v[i]) then
      return bury(id, key, q, v[10], 'the ' .. TAKE[i] .. ' field is missing or not a number')
    end
  end
  local attempts, token = int(tonumber(v[5]) + 1), int(tonumber(v[9]) + 1)
  redis.call('HSET', key, 'status', 'running', 'attempts', attempts, 'lease_token', token,
    'lease_owner', worker, 'lease_expires_at', expires, 'started_at', now)
  if v[13] or v[14] or v[15] then
    redis.call('HDEL', key, 'progress', 'progress_message', 'cancel_requested')
  end
  leases[#leases + 1] = expires
  leases[#leases + 1] = id
  -- What the caller does not know already (status, lease and start are this call's), as
  -- LEASED (_redis_records.py) lists them: an array, false for none, read by hiredis in C.
  out[#out + 1] = { id, v[1], q, v[2], v[4], attempts, v[6], v[7], v[8], token, v[10], v[11],
    v[12] }
  taken_ids[#taken_ids + 1] = id
  taken_tokens[#taken_tokens + 1] = token
end

-- The next `need` due members across the queues, best first: {member, queue} pairs.
local function pick(need)
  if #queues == 1 then
    local q = queues[1]
    local popped = redis.call('ZPOPMIN', P .. ':queue:' .. q, need)
    local picked = {}
    for i = 1, #popped, 2 do
      picked[#picked + 1] = { popped[i], q }
    end
    return picked
  end
  local candidates = {}
  for _, q in ipairs(queues) do
    local top = redis.call('ZRANGE', P .. ':queue:' .. q, 0, need - 1, 'WITHSCORES')
    for i = 1, #top, 2 do
      candidates[#candidates + 1] = { tonumber(top[i + 1]), top[i], q }
    end
  end
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  local picked = {}
  for i = 1, math.min(need, #candidates) do
    local c = candidates[i]
    redis.call('ZREM', P .. ':queue:' .. c[3], c[2])
    picked[#picked + 1] = { c[2], c[3] }
  end
  return picked
end

while #out < limit do
  local picked = pick(limit - #out)
  if #picked == 0 then
    break
  end
  for _, entry in ipairs(picked) do
    take(string.sub(entry[1], 33), entry[2])
  end
end

if #out > 0 then
  for i = 1, #leases, 1000 do -- one call per batch (unpack takes a few thousand values)
    redis.call('ZADD', running, unpack(leases, i, math.min(i + 999, #leases)))
  end
  table.insert(recent, 1, { nonce, taken_ids, taken_tokens })
  recent[KEEP + 1] = nil
  redis.call('SET', record_key, cjson.encode(recent))
end
-- Promoted jobs this worker left behind may be due for others who are waiting.
for q, yes in pairs(wake) do
  if yes and redis.call('EXISTS', P .. ':queue:' .. q) == 1 then
    redis.call('PUBLISH', P .. ':wake', q)
    wake_idlers(q)
  end
end
return out
