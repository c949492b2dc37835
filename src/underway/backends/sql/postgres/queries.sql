-- The PostgreSQL backend's queries, loaded by name ("-- name: ...") by
-- backends/_postgres_schema.py. {schema} stands for the backend's quoted schema name; it is
-- replaced once, when the backend is built, and never with values. Times are timestamptz
-- from the backend's clock (never now(), so that an injected clock rules everywhere).
-- Batches travel as parallel arrays expanded by unnest(), so that one statement, one round
-- trip, serves many jobs. NOTIFY goes out from inside the statement that makes a job
-- acquirable: it is delivered when (and only if) that statement's transaction commits.

-- name: enqueue
-- $1..$9: parallel arrays, one element per job; $10: enqueued_at; $11: the channel.
-- Returns a row only for a job with a unique key that was not stored, with the active job
-- that holds the key (NULL columns when that job is not in this statement's snapshot:
-- earlier in the same batch, or committed concurrently).
WITH new AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::int[],
                $7::int[], $8::timestamptz[], $9::text[])
        WITH ORDINALITY AS n(id, task_name, queue, payload, status, priority,
                             max_attempts, scheduled_at, unique_key, ord)
),
inserted AS (
    INSERT INTO {schema}.jobs (id, task_name, queue, payload, status, priority, max_attempts,
                               enqueued_at, scheduled_at, unique_key)
    SELECT id, task_name, queue, payload, status, priority, max_attempts, $10, scheduled_at,
           unique_key
    FROM new
    ORDER BY ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('queued', 'scheduled', 'running')
        DO NOTHING
    RETURNING id, CASE WHEN status = 'queued' THEN pg_notify($11, queue) END
)
SELECT new.ord AS ord, new.id AS new_id, existing.*
FROM new
LEFT JOIN {schema}.jobs AS existing
    ON existing.unique_key = new.unique_key
    AND existing.status IN ('queued', 'scheduled', 'running')
WHERE new.unique_key IS NOT NULL AND new.id NOT IN (SELECT id FROM inserted);

-- name: latest_by_unique_key
SELECT * FROM {schema}.jobs WHERE unique_key = $1 ORDER BY seq DESC LIMIT 1;

-- name: job_by_id
SELECT * FROM {schema}.jobs WHERE id = $1;

-- name: job_by_id_for_update
SELECT * FROM {schema}.jobs WHERE id = $1 FOR UPDATE;

-- name: active_by_unique_key
SELECT 1 FROM {schema}.jobs
WHERE unique_key = $1 AND status IN ('queued', 'scheduled', 'running');

-- name: acquire
-- $1: queue names; $2: now; $3: limit; $4: worker id; $5: lease expiry.
-- One index scan per queue (each in priority, time and enqueue order), merged and cut to
-- the limit; SKIP LOCKED lets concurrent workers take different jobs without waiting.
WITH picked AS (
    SELECT j.seq
    FROM unnest($1::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT seq, priority, scheduled_at
        FROM {schema}.jobs
        WHERE queue = q.name AND status IN ('queued', 'scheduled') AND scheduled_at <= $2
        ORDER BY priority DESC, scheduled_at, seq
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS j
    ORDER BY j.priority DESC, j.scheduled_at, j.seq
    LIMIT $3
)
UPDATE {schema}.jobs AS t
SET status = 'running',
    attempts = t.attempts + 1,
    lease_token = t.lease_token + 1,
    lease_owner = $4,
    lease_expires_at = $5,
    started_at = $2,
    progress = NULL,
    progress_message = NULL,
    cancel_requested = false
FROM picked
WHERE t.seq = picked.seq
RETURNING t.*;

-- name: exchange
-- release and acquire (below and above) in one statement: one round trip, one commit.
-- $1..$8: parallel arrays, one element per release; $9: now; $10: the channel;
-- $11: queue names; $12: limit; $13: worker id; $14: lease expiry.
-- The outcomes of backends/transitions.py:released, in SQL; the dead reason is
-- base.exhausted_reason(attempts, "the task failed") (a test holds them equal).
-- The acquire takes one index scan per queue (each in priority, time and enqueue order),
-- merged and cut to the limit; SKIP LOCKED lets concurrent workers take different jobs
-- without waiting. The statement sees one snapshot: the jobs it releases are still running
-- there, so the two updates never touch the same row, and a job it puts back in its queue
-- is not acquired by it.
-- Returns a row per acquired job (released NULL), then one row whose released column holds
-- the ordinals of the releases that were applied (its job columns NULL).
WITH r AS (
    SELECT *
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                $7::timestamptz[], $8::text[])
        WITH ORDINALITY AS r(id, token, kind, result, error, traceback, retry_at, reason, ord)
),
done AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE r.kind
            WHEN 'success' THEN 'succeeded'
            WHEN 'failure' THEN
                CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'failed' END
            WHEN 'retry' THEN CASE WHEN r.retry_at > $9 THEN 'scheduled' ELSE 'queued' END
            WHEN 'cancelled' THEN 'cancelled'
            WHEN 'dead' THEN 'dead'
            ELSE 'queued'
        END,
        result = CASE WHEN r.kind = 'success' THEN r.result ELSE j.result END,
        error = CASE WHEN r.kind IN ('failure', 'retry', 'dead') THEN r.error ELSE j.error END,
        traceback = CASE
            WHEN r.kind IN ('failure', 'retry', 'dead') THEN r.traceback ELSE j.traceback
        END,
        finished_at = CASE
            WHEN r.kind IN ('success', 'failure', 'cancelled', 'dead') THEN $9
            ELSE j.finished_at
        END,
        scheduled_at = CASE WHEN r.kind = 'retry' THEN r.retry_at ELSE j.scheduled_at END,
        attempts = CASE
            WHEN r.kind = 'requeue' THEN greatest(j.attempts - 1, 0) ELSE j.attempts
        END,
        dead_reason = CASE
            WHEN r.kind = 'dead' THEN r.reason
            WHEN r.kind = 'failure' AND j.attempts >= j.max_attempts THEN
                'retries exhausted: the task failed after ' || j.attempts || ' attempt'
                || CASE WHEN j.attempts = 1 THEN '' ELSE 's' END
            ELSE j.dead_reason
        END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM r
    WHERE j.id = r.id AND j.lease_token = r.token AND j.status = 'running'
    RETURNING r.ord, CASE WHEN j.status = 'queued' THEN pg_notify($10, j.queue) END
),
picked AS (
    SELECT j.seq
    FROM unnest($11::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT seq, priority, scheduled_at
        FROM {schema}.jobs
        WHERE queue = q.name AND status IN ('queued', 'scheduled') AND scheduled_at <= $9
        ORDER BY priority DESC, scheduled_at, seq
        LIMIT $12
        FOR UPDATE SKIP LOCKED
    ) AS j
    ORDER BY j.priority DESC, j.scheduled_at, j.seq
    LIMIT $12
),
acquired AS (
    UPDATE {schema}.jobs AS t
    SET status = 'running',
        attempts = t.attempts + 1,
        lease_token = t.lease_token + 1,
        lease_owner = $13,
        lease_expires_at = $14,
        started_at = $9,
        progress = NULL,
        progress_message = NULL,
        cancel_requested = false
    FROM picked
    WHERE t.seq = picked.seq
    RETURNING t.*
)
SELECT NULL::bigint[] AS released, a.* FROM acquired AS a
UNION ALL
SELECT array(SELECT ord FROM done), (NULL::{schema}.jobs).*;

-- name: any_due
SELECT EXISTS (
    SELECT 1 FROM {schema}.jobs
    WHERE queue = ANY($1::text[]) AND status IN ('queued', 'scheduled') AND scheduled_at <= $2
);

-- name: extend_leases
-- $1, $2: job ids and tokens; $3: new expiry; $4: now; $5: worker id.
WITH held AS (
    UPDATE {schema}.jobs AS j
    SET lease_expires_at = $3
    FROM unnest($1::text[], $2::bigint[]) AS l(id, token)
    WHERE j.id = l.id AND j.lease_token = l.token AND j.status = 'running'
    RETURNING j.id, j.cancel_requested
),
touched AS (
    UPDATE {schema}.workers SET heartbeat_at = $4 WHERE id = $5
)
SELECT id, cancel_requested FROM held;

-- name: release
-- $1..$8: parallel arrays, one element per release; $9: now; $10: the channel.
-- The outcomes of backends/transitions.py:released, in SQL; the dead reason is
-- base.exhausted_reason(attempts, "the task failed") (a test holds them equal).
-- Returns the ordinal of every release that was applied.
WITH r AS (
    SELECT *
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                $7::timestamptz[], $8::text[])
        WITH ORDINALITY AS r(id, token, kind, result, error, traceback, retry_at, reason, ord)
),
done AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE r.kind
            WHEN 'success' THEN 'succeeded'
            WHEN 'failure' THEN
                CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'failed' END
            WHEN 'retry' THEN CASE WHEN r.retry_at > $9 THEN 'scheduled' ELSE 'queued' END
            WHEN 'cancelled' THEN 'cancelled'
            WHEN 'dead' THEN 'dead'
            ELSE 'queued'
        END,
        result = CASE WHEN r.kind = 'success' THEN r.result ELSE j.result END,
        error = CASE WHEN r.kind IN ('failure', 'retry', 'dead') THEN r.error ELSE j.error END,
        traceback = CASE
            WHEN r.kind IN ('failure', 'retry', 'dead') THEN r.traceback ELSE j.traceback
        END,
        finished_at = CASE
            WHEN r.kind IN ('success', 'failure', 'cancelled', 'dead') THEN $9
            ELSE j.finished_at
        END,
        scheduled_at = CASE WHEN r.kind = 'retry' THEN r.retry_at ELSE j.scheduled_at END,
        attempts = CASE
            WHEN r.kind = 'requeue' THEN greatest(j.attempts - 1, 0) ELSE j.attempts
        END,
        dead_reason = CASE
            WHEN r.kind = 'dead' THEN r.reason
            WHEN r.kind = 'failure' AND j.attempts >= j.max_attempts THEN
                'retries exhausted: the task failed after ' || j.attempts || ' attempt'
                || CASE WHEN j.attempts = 1 THEN '' ELSE 's' END
            ELSE j.dead_reason
        END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM r
    WHERE j.id = r.id AND j.lease_token = r.token AND j.status = 'running'
    RETURNING r.ord, CASE WHEN j.status = 'queued' THEN pg_notify($10, j.queue) END
)
SELECT ord FROM done;

-- name: reap
-- $1: now; $2: the channel. transitions.reaped in SQL; the dead reason is
-- base.exhausted_reason(attempts, "the lease expired (the worker stopped)").
WITH expired AS (
    SELECT seq FROM {schema}.jobs
    WHERE status = 'running' AND lease_expires_at < $1
    FOR UPDATE SKIP LOCKED
),
reaped AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        dead_reason = CASE
            WHEN j.attempts >= j.max_attempts THEN
                'retries exhausted: the lease expired (the worker stopped) after '
                || j.attempts || ' attempt' || CASE WHEN j.attempts = 1 THEN '' ELSE 's' END
            ELSE j.dead_reason
        END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN $1 ELSE j.finished_at END,
        scheduled_at = CASE WHEN j.attempts >= j.max_attempts THEN j.scheduled_at ELSE $1 END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM expired
    WHERE j.seq = expired.seq
    RETURNING j.*
)
SELECT *, CASE WHEN status = 'queued' THEN pg_notify($2, queue) END AS notified FROM reaped;

-- name: update_job
-- Writes back every field a state change may touch (see backends/transitions.py).
UPDATE {schema}.jobs
SET status = $2,
    attempts = $3,
    scheduled_at = $4,
    started_at = $5,
    finished_at = $6,
    lease_owner = $7,
    lease_expires_at = $8,
    lease_token = $9,
    result = $10,
    error = $11,
    traceback = $12,
    progress = $13,
    progress_message = $14,
    cancel_requested = $15,
    dead_reason = $16
WHERE id = $1;

-- name: notify
SELECT pg_notify($1, $2);

-- name: set_progress
UPDATE {schema}.jobs SET progress = $3, progress_message = $4
WHERE id = $1 AND lease_token = $2 AND status = 'running';

-- name: count_jobs
SELECT queue,
       CASE WHEN status = 'scheduled' AND scheduled_at <= $1 THEN 'queued' ELSE status END
           AS reported,
       count(*) AS n
FROM {schema}.jobs
GROUP BY 1, 2;

-- name: purge
WITH deleted AS (
    DELETE FROM {schema}.jobs WHERE status = ANY($1::text[]) AND finished_at < $2
    RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: upsert_worker
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, started_at,
                              heartbeat_at, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (id) DO UPDATE SET
    hostname = excluded.hostname,
    pid = excluded.pid,
    queues = excluded.queues,
    concurrency = excluded.concurrency,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at,
    metadata = excluded.metadata;

-- name: delete_worker
DELETE FROM {schema}.workers WHERE id = $1;

-- name: list_workers
SELECT * FROM {schema}.workers ORDER BY id;

-- name: prune_workers
WITH pruned AS (
    DELETE FROM {schema}.workers WHERE heartbeat_at < $1 RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: claim_tick
-- Wins only when the tick is later than the schedule's last one; a row comes back if so.
-- Concurrent claimers of one tick queue on the row lock; the losers see the new tick.
INSERT INTO {schema}.schedules AS s (name, last_tick) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick
WHERE s.last_tick < excluded.last_tick
RETURNING true;

-- name: last_tick
SELECT last_tick FROM {schema}.schedules WHERE name = $1;
