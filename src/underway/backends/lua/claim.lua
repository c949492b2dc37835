-- Claim a schedule's tick if it is later than every tick claimed before, and enqueue its
-- job with it. ARGV: prefix, now, schedule, tick, nonce, has_job, then NEW_FIELDS.
-- Returns 1 if this call won the tick (now or in an earlier try), else 0.
local now, name, tick, nonce = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ticks = P .. ':ticks'
local last = redis.call('HGET', ticks, name)
if last then
  local space = string.find(last, ' ', 1, true)
  local last_tick, last_nonce = string.sub(last, 1, space - 1), string.sub(last, space + 1)
  if tonumber(tick) <= tonumber(last_tick) then
    if last_tick == tick and last_nonce == nonce then
      return 1
    end
    return 0
  end
end
if ARGV[6] == '1' then
  local done = check_new(7, nonce)
  if type(done) == 'table' then
    return done
  end
end
redis.call('HSET', ticks, name, tick .. ' ' .. nonce)
if ARGV[6] == '1' then
  insert(7, now, nonce, int(redis.call('INCR', P .. ':seq')))
  flush_later()
end
publish_wakes()
return 1
