-- KEYS[1]: the active workers sorted set
-- KEYS[2]: the active job list
-- KEYS[3]: this workers inflight set
-- KEYS[4]: the task data hash
-- KEYS[5]: the signal list
-- KEYS[6]: the task metadata prefix
-- KEYS[7]: the scheduled jobs sorted set

-- ARGV[1]: current timestamp
-- ARGV[2]: maximum number of jobs to fetch
-- ARGV[3]: worker name

-- Returns: {results, meta}

local worker_inflight_set = KEYS[3]
local worker_name = ARGV[3]


-- PATCH(krug): a worker missing from the set (Redis restarted, or its entry expired)
-- registers again instead of failing every poll until the next keep-alive.
local registered = redis.call("zscore", KEYS[1], worker_name)
if not registered then
    redis.call("zadd", KEYS[1], ARGV[1], worker_name)
end

-- 1. Promote due scheduled jobs.
-- PATCH(krug): at most PROMOTE_LIMIT per poll, in chunks. Upstream promoted the whole due
-- set with one unpack(), which fails past ~8000 ids ("too many results to unpack") and
-- stalled the queue for good.
local PROMOTE_LIMIT = 5000
local CHUNK = 500
local scheduled_ids = redis.call(
    "zrangebyscore",
    KEYS[7],
    0,
    ARGV[1],
    "LIMIT",
    0,
    PROMOTE_LIMIT
)

if #scheduled_ids > 0 then
    for i = 1, #scheduled_ids, CHUNK do
        local last = math.min(i + CHUNK - 1, #scheduled_ids)
        redis.call("rpush", KEYS[2], unpack(scheduled_ids, i, last))
        redis.call("zrem", KEYS[7], unpack(scheduled_ids, i, last))
    end

    -- Signal that jobs are available
    redis.call("del", KEYS[5])
    redis.call("lpush", KEYS[5], 1)
end

-- 2. Fetch jobs from the active queue
local task_ids = redis.call(
    "lrange",
    KEYS[2],
    0,
    tonumber(ARGV[2]) - 1
)

local count = #task_ids
local results = {}
local meta = {}

if count > 0 then
    -- Mark jobs as inflight
    redis.call("sadd", worker_inflight_set, unpack(task_ids))

    -- PATCH(krug): record who runs each task and since when here, in the fetch itself, so
    -- that workers need not take leases in a second round trip per batch (lock_tasks off).
    for _, task_id in ipairs(task_ids) do
        redis.call("hset", KEYS[6] .. ":" .. task_id, "status", "Running", "locked_at", ARGV[1], "locked_by", worker_name)
    end

    -- Remove fetched jobs from the active queue
    redis.call("ltrim", KEYS[2], count, -1)

    -- Fetch job data
    results = redis.call(
        "hmget",
        KEYS[4],
        unpack(task_ids)
    )

    -- Fetch metadata
    for _, task_id in ipairs(task_ids) do
        local meta_key = KEYS[6] .. ":" .. task_id
        local fields = redis.call("hgetall", meta_key)

        -- Insert task ID as the first element
        table.insert(fields, 1, task_id)
        table.insert(meta, fields)
    end
end

-- 3. Clear the signal if fewer jobs were fetched
-- than requested
if count < tonumber(ARGV[2]) then
    redis.call("del", KEYS[5])
end

return {results, meta}
