-- Deletes a dead job for good: its place in the dead set, its payload and its meta.
-- KEYS[1] dead set, KEYS[2] data hash, KEYS[3] meta hash of the job
-- ARGV[1] job id
-- Returns 1 if deleted, 0 if the job was not dead.
if redis.call("srem", KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("del", KEYS[3])
return 1
