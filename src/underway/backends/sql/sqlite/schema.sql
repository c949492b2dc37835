-- The current SQLite schema, for readers. Migrations are the source of truth;
-- tests/backends/test_sqlite.py checks that applying them all yields exactly this.

CREATE TABLE schema_version (version INTEGER PRIMARY KEY);

CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,              -- enqueue order (FIFO tie-break, newest-first lists)
    id TEXT NOT NULL UNIQUE,
    task_name TEXT NOT NULL,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    enqueued_at INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    lease_token INTEGER NOT NULL DEFAULT 0,
    unique_key TEXT,
    result BLOB,
    error TEXT,
    traceback TEXT,
    progress REAL,
    progress_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    dead_reason TEXT
);

-- acquire: due jobs of a queue in priority, time and enqueue order.
CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, scheduled_at, seq)
    WHERE status IN ('queued', 'scheduled');

-- reap_expired.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';

-- Unique keys hold only while a job is active; the enqueue code checks first, this is the net.
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'scheduled', 'running');

-- purge.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- list_jobs filters and count_jobs.
CREATE INDEX jobs_queue_status ON jobs (queue, status);
CREATE INDEX jobs_task_name ON jobs (task_name);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL,                 -- JSON array
    concurrency INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'   -- JSON object
);

CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    last_tick INTEGER NOT NULL
);
