-- The state of one job, as operators see it.
-- KEYS[1] active list, KEYS[2] scheduled zset, KEYS[3] done set, KEYS[4] dead set,
-- KEYS[5] data hash, KEYS[6] meta hash of the job
-- ARGV[1] job id
-- Returns: state, or "missing".
local id = ARGV[1]
if redis.call("hexists", KEYS[5], id) == 0 then
    return "missing"
end
if redis.call("sismember", KEYS[4], id) == 1 then
    return "dead"
end
if redis.call("sismember", KEYS[3], id) == 1 then
    return "done"
end
if redis.call("zscore", KEYS[2], id) then
    if redis.call("hget", KEYS[6], "status") == "Failed" then
        return "failed"
    end
    return "scheduled"
end
if redis.call("lpos", KEYS[1], id) then
    return "pending"
end
return "running"
