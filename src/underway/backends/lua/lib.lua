-- Helpers prepended to every script of the Redis backend (see redis.py for the key layout).
-- ARGV[1] is always the key prefix. Timestamps are integer microseconds since the epoch and
-- travel as strings: Lua formats large numbers with 14 digits, so they are never rebuilt
-- from a Lua number except through string.format('%d').
local P = ARGV[1]
local wake = {}

local function job_key(id)
  return P .. ':job:' .. id
end

-- Optional strings travel as '' (none) or '=' .. value.
local function opt(v)
  if v == '' then
    return nil
  end
  return string.sub(v, 2)
end

local function int(n)
  return string.format('%d', n)
end

local function put(key, field, value)
  if value then
    redis.call('HSET', key, field, value)
  else
    redis.call('HDEL', key, field)
  end
end

-- A due job's member: equal scores (-priority) sort by member, so by scheduled_at, then seq.
local function due_member(sa, seq, id)
  local at = tonumber(sa)
  if at < 0 then
    at = 0
  end
  return string.format('%016d%016d', at, tonumber(seq)) .. id
end

-- Whether the queue's due set was empty when this call first looked. Workers waiting on a
-- queue saw it empty: they are told (publish_wakes) when it stops being so, and while it is
-- not, none waits on it (they register only on empty queues, and are woken off them).
local function was_empty(q)
  if wake[q] == nil then
    wake[q] = redis.call('EXISTS', P .. ':queue:' .. q) == 0
  end
  return wake[q]
end

local function due_add(q, priority, sa, seq, id)
  was_empty(q)
  redis.call('ZADD', P .. ':queue:' .. q, int(-tonumber(priority)), due_member(sa, seq, id))
end

-- Sorted-set additions a batch makes, written at its end with one ZADD per key (a call
-- per job would cost more than the jobs' own writes).
local later = {}
local function add_later(key, score, member)
  local pending = later[key]
  if not pending then
    pending = {}
    later[key] = pending
  end
  pending[#pending + 1] = score
  pending[#pending + 1] = member
end

local function flush_later()
  for key, pending in pairs(later) do
    for i = 1, #pending, 1000 do -- (unpack takes a few thousand values)
      redis.call('ZADD', key, unpack(pending, i, math.min(i + 999, #pending)))
    end
  end
  later = {}
end

-- Waiting workers sleep until the earliest scheduled job; tell them of an earlier one.
local function scheduled_add(q, sa, id)
  local key = P .. ':scheduled:' .. q
  if not wake[q] then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] == nil or tonumber(sa) < tonumber(first[2]) then
      wake[q] = true
    end
  end
  redis.call('ZADD', key, sa, id)
end

local function unwait(id, q, sa, seq)
  if sa and seq and tonumber(sa) and tonumber(seq) then
    redis.call('ZREM', P .. ':queue:' .. q, due_member(sa, seq, id))
  end
  redis.call('ZREM', P .. ':scheduled:' .. q, id)
end

-- The fields of a job record, in the order record() sends them (_redis_records.FIELDS).
local FIELDS = { 'id', 'task_name', 'queue', 'payload', 'status', 'priority', 'attempts',
  'max_attempts', 'enqueued_at', 'scheduled_at', 'started_at', 'finished_at', 'lease_owner',
  'lease_expires_at', 'lease_token', 'unique_key', 'result', 'error', 'traceback', 'progress',
  'progress_message', 'cancel_requested', 'dead_reason' }

-- A job's record as one string: the values' lengths (-1 for none), a newline, the values.
-- One bulk reply per job is far cheaper for the client to read than an array of fields.
local function pack(values)
  local lengths, parts = {}, {}
  for i = 1, #FIELDS do
    local value = values[i]
    if value then
      lengths[i] = #value
      parts[#parts + 1] = value
    else
      lengths[i] = -1
    end
  end
  return table.concat(lengths, ',') .. '\n' .. table.concat(parts)
end

local function record(key)
  return pack(redis.call('HMGET', key, unpack(FIELDS)))
end

-- Idle workers (RedisBackend.wait_for_jobs): P:idle:<queue> holds the workers waiting on the
-- queue, scored by when their wait ends; P:idler:<worker> their free slots, lease (us) and
-- queues; P:handoff:<worker> what they are handed: 'token record' for a job leased to the
-- worker (an enqueue hands its job straight to a waiting worker), or '' to wake it.
local function unregister_idle(w)
  local reg = P .. ':idler:' .. w
  local queues = redis.call('HGET', reg, 'queues')
  if queues then
    for _, q in ipairs(cjson.decode(queues)) do
      redis.call('ZREM', P .. ':idle:' .. q, w)
    end
    redis.call('DEL', reg)
  end
end

-- Wake the workers waiting on a queue, which then look for work themselves.
local function wake_idlers(q)
  for _, w in ipairs(redis.call('ZRANGE', P .. ':idle:' .. q, 0, -1)) do
    redis.call('RPUSH', P .. ':handoff:' .. w, '')
    unregister_idle(w)
  end
end

local function publish_wakes()
  for q, yes in pairs(wake) do
    if yes then
      redis.call('PUBLISH', P .. ':wake', q)
      wake_idlers(q)
    end
  end
end

-- A worker waiting on queue q whose wait has not ended, or nil (none, as far as this call
-- has looked: the answer only changes when a handoff uses up a worker's free slots).
local no_idler = {}
local function idler(q, now)
  if no_idler[q] then
    return nil
  end
  local found = redis.call('ZRANGEBYSCORE', P .. ':idle:' .. q, '(' .. now, '+inf', 'LIMIT', 0, 1)
  if found[1] then
    return found[1]
  end
  no_idler[q] = true
  return nil
end

local FINISHED = { succeeded = true, failed = true, cancelled = true, dead = true }
local ACTIVE = { queued = true, scheduled = true, running = true }

-- A job reached a final status: index it for purge and counts, and free its unique key.
local function finish(id, q, status, unique_key, now)
  redis.call('ZADD', P .. ':finished:' .. q .. ':' .. status, now, id)
  if unique_key and redis.call('HGET', P .. ':unique', unique_key) == id then
    redis.call('HDEL', P .. ':unique', unique_key)
  end
end

local function exhausted(attempts, what)
  local s = 's'
  if attempts == 1 then
    s = ''
  end
  return 'retries exhausted: ' .. what .. ' after ' .. int(attempts) .. ' attempt' .. s
end

-- A new job's fields are 8 ARGV entries from index i: id, task_name, queue, payload,
-- priority, max_attempts, scheduled_at ('' for now) and unique_key (optional).
local NEW_FIELDS = 8

-- Refuse ids that exist, unless stored by this very call (a retry after a lost reply).
-- Returns nil when the job is new, true when this call stored it already, or an error.
local function check_new(i, nonce)
  local id = ARGV[i]
  local key = job_key(id)
  if redis.call('EXISTS', key) == 0 then
    return nil
  end
  if redis.call('HGET', key, 'enqueue_nonce') == nonce then
    return true
  end
  return redis.error_reply('UNDERWAY_DUPLICATE_ID job ids must be unique; ' .. id ..
    ' exists. Leave NewJob.id to its default.')
end

local negated = {} -- priority -> the due set's score for it (the same for most jobs)

-- Store the new job at ARGV[i]; returns 0, the record of the job as a waiting worker was
-- handed it, or the record of the active job holding its unique key. Its index entries are
-- written by flush_later(), which the caller runs once its batch is stored.
local function insert(i, now, nonce, seq)
  local id, task, q, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local priority, max_attempts, sa = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local unique_key = opt(ARGV[i + 7])
  if unique_key then
    local other = redis.call('HGET', P .. ':unique', unique_key)
    if other then
      local other_key = job_key(other)
      if ACTIVE[redis.call('HGET', other_key, 'status')] then
        return record(other_key)
      end
    end
  end
  local status, at = 'queued', nil
  if sa == '' then
    sa, at = now, tonumber(now)
  else
    at = tonumber(sa)
    if at > tonumber(now) then
      status = 'scheduled'
    end
  end
  local key = job_key(id)
  local fresh = status ~= 'queued' or was_empty(q) -- (else the queue's name is known)
  local w = status == 'queued' and fresh and idler(q, now)
  local reg = w and redis.call('HMGET', P .. ':idler:' .. w, 'free', 'lease')
  local handed = nil
  if w and tonumber(reg[1]) and tonumber(reg[2]) then
    -- A worker waits with a free slot: lease the job to it now, and hand it over.
    local expires = int(tonumber(now) + tonumber(reg[2]))
    redis.call('HSET', key, 'id', id, 'task_name', task, 'queue', q, 'payload', payload,
      'status', 'running', 'priority', priority, 'attempts', '1', 'max_attempts',
      max_attempts, 'enqueued_at', now, 'scheduled_at', sa, 'started_at', now, 'lease_owner',
      w, 'lease_expires_at', expires, 'lease_token', '1', 'seq', seq, 'enqueue_nonce', nonce)
    redis.call('ZADD', P .. ':running', expires, id)
    handed = pack({ id, task, q, payload, 'running', priority, '1', max_attempts, now, sa, now,
      false, w, expires, '1', unique_key or false })
    redis.call('RPUSH', P .. ':handoff:' .. w, '1 ' .. handed)
    if tonumber(reg[1]) > 1 then
      redis.call('HSET', P .. ':idler:' .. w, 'free', int(tonumber(reg[1]) - 1))
    else
      unregister_idle(w)
      no_idler[q] = nil
    end
  else
    if w then
      unregister_idle(w) -- an entry without its registration: drop it
      no_idler[q] = nil
    end
    redis.call('HSET', key, 'id', id, 'task_name', task, 'queue', q, 'payload', payload,
      'status', status, 'priority', priority, 'attempts', '0', 'max_attempts', max_attempts,
      'enqueued_at', now, 'scheduled_at', sa, 'lease_token', '0', 'seq', seq,
      'enqueue_nonce', nonce)
  end
  if unique_key then
    redis.call('HSET', key, 'unique_key', unique_key)
    redis.call('HSET', P .. ':unique', unique_key, id)
  end
  if not handed then -- (a job handed over waits in no queue)
    if status == 'queued' then
      was_empty(q)
      local score = negated[priority]
      if not score then
        score = int(-tonumber(priority))
        negated[priority] = score
      end
      if at < 0 then
        at = 0
      end
      add_later(P .. ':queue:' .. q, score, string.format('%016d%016d', at, seq) .. id)
    else
      scheduled_add(q, sa, id)
    end
  end
  add_later(P .. ':jobs', seq, id)
  if fresh then
    redis.call('SADD', P .. ':queues', q)
  end
  return handed or 0
end
