-- KEYS[1] =  the worker inflight_set
-- KEYS[2] = done_jobs_set
-- KEYS[3] = dead_jobs_set
-- KEYS[4] = scheduled_jobs_set
-- KEYS[5] = job_meta_hash
-- ARGV[1] = emit events
-- ARGV[2..] = repeating groups of: task_id, timestamp, result_data, status, attempt
local inflight_set = KEYS[1]
local done_jobs_set = KEYS[2]
local dead_jobs_set = KEYS[3]
local scheduled_jobs_set = KEYS[4]
local job_meta_hash = KEYS[5]
local emit_events = ARGV[1] == "1"

local args_per_task = 5
local num_tasks = (#ARGV - 1) / args_per_task
local acked = 0

for i = 0, num_tasks - 1 do
    local base = (i * args_per_task + 1)
    local task_id = ARGV[base + 1]
    local timestamp = ARGV[base + 2]
    local result_data = ARGV[base + 3]
    local status = ARGV[base + 4]
    local attempt = ARGV[base + 5]

    local removed = redis.call('SREM', inflight_set, task_id)
    -- PATCH(krug): a task this worker no longer holds (re-enqueued as an orphan and taken by
    -- another worker) is skipped; upstream raised an error that failed every other ack in
    -- the batch and killed the worker.
    local meta_key = job_meta_hash .. ':' .. task_id
    local max_attempts = tonumber(redis.call('HGET', meta_key, 'max_attempts')) or 25
    local attempts = tonumber(attempt) or 0
    if removed == 0 then
        status = 'Skipped'
    end

    if status == 'Skipped' then
        -- nothing: the holder of the task records its outcome
    elseif status == 'Done' then
        redis.call('SADD', done_jobs_set, task_id)
        if emit_events then
            redis.call("publish", "tasks:" .. done_jobs_set, task_id)
        end

    elseif (status == 'Failed' or status == 'Pending') and attempts < max_attempts then
        -- PATCH(krug): the task's own max_attempts (upstream: a hard-coded 25) and exponential
        -- backoff, 2^(attempt-1) s capped at 10 min, with a per-task spread of up to 25 %
        -- so that a burst of failures does not retry in lockstep (upstream: attempt seconds).
        local delay = math.min(2 ^ math.max(attempts - 1, 0), 600)
        local spread = (string.byte(task_id, -1) + string.byte(task_id, -2)) % 26
        delay = math.floor(delay + delay * spread / 100)
        redis.call("zadd", scheduled_jobs_set, tonumber(timestamp) + delay, task_id)
        if emit_events then
            redis.call("publish", "tasks:" .. scheduled_jobs_set .. ':retry', task_id)
        end
    else
        redis.call('SADD', dead_jobs_set, task_id)
        if emit_events then
            redis.call("publish", "tasks:" .. dead_jobs_set, task_id)
        end
    end

    if status ~= 'Skipped' then
        redis.call('HSET', meta_key, 'result', result_data, 'status', status, 'attempts', attempt, 'done_at', timestamp)
        acked = acked + 1
    end
end

return acked
