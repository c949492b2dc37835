-- underway's PostgreSQL schema, version 1.
-- Runs with search_path set to the backend's schema (default "underway"), inside the
-- migration transaction that holds the schema's advisory lock.

CREATE TABLE jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- enqueue order (FIFO tie-break)
    id text NOT NULL UNIQUE,
    task_name text NOT NULL,
    queue text NOT NULL,
    payload bytea NOT NULL,
    status text NOT NULL CHECK (status IN
        ('queued', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    enqueued_at timestamptz NOT NULL,
    scheduled_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    lease_owner text,
    lease_expires_at timestamptz,
    lease_token bigint NOT NULL DEFAULT 0,
    unique_key text,
    result bytea,
    error text,
    traceback text,
    progress double precision,
    progress_message text,
    cancel_requested boolean NOT NULL DEFAULT false,
    dead_reason text
);

-- acquire: due jobs of a queue in priority, time and enqueue order.
CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, scheduled_at, seq)
    WHERE status IN ('queued', 'scheduled');

-- reap_expired.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';

-- Unique keys hold only while a job is active; enqueue's ON CONFLICT names this index.
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'scheduled', 'running');

-- purge.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE workers (
    id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE schedules (
    name text PRIMARY KEY,
    last_tick timestamptz NOT NULL
);
