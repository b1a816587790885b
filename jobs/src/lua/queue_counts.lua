-- Counts by state for one queue.
-- KEYS[1] active list, KEYS[2] scheduled zset, KEYS[3] done set, KEYS[4] dead set,
-- KEYS[5] workers zset, KEYS[6] inflight set prefix, KEYS[7] meta hash prefix
-- ARGV[1] how many scheduled jobs to inspect at most (to tell failed from scheduled)
-- Returns {pending, scheduled, failed, running, done, dead, oldest pending id or ""}
local scheduled, failed = 0, 0
local ids = redis.call("zrange", KEYS[2], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
    if redis.call("hget", KEYS[7] .. ":" .. id, "status") == "Failed" then
        failed = failed + 1
    else
        scheduled = scheduled + 1
    end
end
-- Beyond the inspected ones, count the rest as scheduled.
scheduled = scheduled + math.max(redis.call("zcard", KEYS[2]) - #ids, 0)
local running = 0
for _, worker in ipairs(redis.call("zrange", KEYS[5], 0, -1)) do
    running = running + redis.call("scard", KEYS[6] .. ":" .. worker)
end
local oldest = redis.call("lindex", KEYS[1], 0) or ""
return {redis.call("llen", KEYS[1]), scheduled, failed, running, redis.call("scard", KEYS[3]),
        redis.call("scard", KEYS[4]), oldest}
