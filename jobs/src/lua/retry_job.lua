-- Sends a failed or dead job back to the queue with its attempts reset.
-- KEYS[1] active list, KEYS[2] scheduled zset, KEYS[3] dead set, KEYS[4] meta hash of the job,
-- KEYS[5] signal list
-- ARGV[1] job id
-- Returns 1 if retried, 0 if the job is not failed or dead.
local id = ARGV[1]
local dead = redis.call("srem", KEYS[3], id) == 1
local failed = false
if not dead and redis.call("zscore", KEYS[2], id) and redis.call("hget", KEYS[4], "status") == "Failed" then
    redis.call("zrem", KEYS[2], id)
    failed = true
end
if not dead and not failed then
    return 0
end
redis.call("hset", KEYS[4], "status", "Pending", "attempts", 0)
redis.call("hdel", KEYS[4], "done_at", "locked_at", "locked_by")
redis.call("rpush", KEYS[1], id)
redis.call("del", KEYS[5])
redis.call("lpush", KEYS[5], 1)
redis.call("publish", "tasks:" .. KEYS[1] .. ":available", id)
return 1
