-- The SQLite backend's queries, loaded by name ("-- name: ...") by backends/sqlite.py.
-- Times are INTEGER microseconds since the Unix epoch, UTC. Every write runs inside
-- BEGIN IMMEDIATE, so a statement sees no other writer between its SELECT and its UPDATE.

-- name: insert_job
INSERT INTO jobs (id, task_name, queue, payload, status, priority, attempts, max_attempts,
                  enqueued_at, scheduled_at, unique_key)
VALUES (:id, :task_name, :queue, :payload, :status, :priority, 0, :max_attempts,
        :enqueued_at, :scheduled_at, :unique_key);

-- name: job_by_id
SELECT * FROM jobs WHERE id = :id;

-- name: active_by_unique_key
SELECT * FROM jobs
WHERE unique_key = :unique_key AND status IN ('queued', 'scheduled', 'running');

-- name: held_job
SELECT * FROM jobs WHERE id = :id AND lease_token = :token AND status = 'running';

-- name: acquire
-- {queues} is a list of "?" placeholders, one per queue name.
UPDATE jobs
SET status = 'running',
    attempts = attempts + 1,
    lease_token = lease_token + 1,
    lease_owner = ?,
    lease_expires_at = ?,
    started_at = ?,
    progress = NULL,
    progress_message = NULL,
    cancel_requested = 0
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE status IN ('queued', 'scheduled') AND queue IN ({queues}) AND scheduled_at <= ?
    ORDER BY priority DESC, scheduled_at, seq
    LIMIT ?
)
RETURNING *;

-- name: any_due
SELECT 1 FROM jobs
WHERE status IN ('queued', 'scheduled') AND queue IN ({queues}) AND scheduled_at <= ?
LIMIT 1;

-- name: extend_lease
UPDATE jobs SET lease_expires_at = :expires_at
WHERE id = :id AND lease_token = :token AND status = 'running'
RETURNING id, cancel_requested;

-- name: release_successes
-- The common outcome, for a batch of jobs in one statement; other outcomes go through
-- update_job. {values} is a list of "(?, ?, ?)" rows: job id, lease token, result. The first
-- parameter is now. Returns the id and token of every job released.
UPDATE jobs
SET status = 'succeeded', result = v.result, finished_at = ?,
    lease_owner = NULL, lease_expires_at = NULL
FROM (SELECT column1 AS id, column2 AS token, column3 AS result FROM (VALUES {values})) AS v
WHERE jobs.id = v.id AND jobs.lease_token = v.token AND jobs.status = 'running'
RETURNING jobs.id, jobs.lease_token;

-- name: expired_leases
SELECT * FROM jobs WHERE status = 'running' AND lease_expires_at < :now;

-- name: update_job
-- Writes back every field a state change may touch (see backends/transitions.py).
UPDATE jobs
SET status = :status,
    attempts = :attempts,
    scheduled_at = :scheduled_at,
    started_at = :started_at,
    finished_at = :finished_at,
    lease_owner = :lease_owner,
    lease_expires_at = :lease_expires_at,
    lease_token = :lease_token,
    result = :result,
    error = :error,
    traceback = :traceback,
    progress = :progress,
    progress_message = :progress_message,
    cancel_requested = :cancel_requested,
    dead_reason = :dead_reason
WHERE id = :id;

-- name: mark_undecodable
UPDATE jobs
SET status = 'dead', dead_reason = :reason, finished_at = :now,
    lease_owner = NULL, lease_expires_at = NULL
WHERE seq = :seq;

-- name: set_progress
UPDATE jobs SET progress = :progress, progress_message = :message
WHERE id = :id AND lease_token = :token AND status = 'running';

-- name: count_jobs
SELECT queue,
       CASE WHEN status = 'scheduled' AND scheduled_at <= :now THEN 'queued' ELSE status END
           AS reported,
       count(*) AS n
FROM jobs
GROUP BY queue, reported;

-- name: purge
-- {statuses} is a list of "?" placeholders, one per status.
DELETE FROM jobs WHERE status IN ({statuses}) AND finished_at < ?;

-- name: upsert_worker
INSERT INTO workers (id, hostname, pid, queues, concurrency, started_at, heartbeat_at, metadata)
VALUES (:id, :hostname, :pid, :queues, :concurrency, :started_at, :heartbeat_at, :metadata)
ON CONFLICT (id) DO UPDATE SET
    hostname = excluded.hostname,
    pid = excluded.pid,
    queues = excluded.queues,
    concurrency = excluded.concurrency,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at,
    metadata = excluded.metadata;

-- name: touch_worker
UPDATE workers SET heartbeat_at = :now WHERE id = :id;

-- name: delete_worker
DELETE FROM workers WHERE id = :id;

-- name: list_workers
SELECT * FROM workers ORDER BY id;

-- name: prune_workers
DELETE FROM workers WHERE heartbeat_at < :cutoff;

-- name: claim_tick
-- Wins only when the tick is later than the schedule's last one; changes() tells.
INSERT INTO schedules (name, last_tick) VALUES (:name, :tick)
ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick
WHERE excluded.last_tick > schedules.last_tick;

-- name: last_tick
SELECT last_tick FROM schedules WHERE name = :name;
