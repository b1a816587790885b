-- Takes a job that has not run to completion out of the queue for good (it goes dead with
-- the operator's reason).
-- KEYS[1] active list, KEYS[2] scheduled zset, KEYS[3] dead set, KEYS[4] meta hash of the job
-- ARGV[1] job id, ARGV[2] now (unix seconds), ARGV[3] result JSON
-- Returns 1 if discarded, 0 if it was neither pending, scheduled nor failed.
local id = ARGV[1]
local removed = redis.call("lrem", KEYS[1], 1, id) + redis.call("zrem", KEYS[2], id)
if removed == 0 then
    return 0
end
redis.call("sadd", KEYS[3], id)
redis.call("hset", KEYS[4], "status", "Killed", "result", ARGV[3], "done_at", ARGV[2])
return 1
