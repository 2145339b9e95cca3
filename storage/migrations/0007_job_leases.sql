-- Jobs are owned by the database, not by one process's memory (several processes share one PostgreSQL; on SQLite
-- one process, the same code). A process claims a job with a lease: `owner` (the claiming process's name for this
-- run), `lease_expires_at` (renewed while it drives the job; once past, anyone may claim it) and `fence`, which
-- grows on every claim. Every write the runner makes about a job checks owner and fence under the row's lock, so a
-- process that lost its lease (paused, cut off, killed) can write nothing more for that job.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at REAL;
ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0 CHECK (fence >= 0);
CREATE INDEX jobs_owner ON jobs (owner, seq);

-- The processes sharing the work, each with its heartbeat: how many are alive decides each one's fair share.
CREATE TABLE processes (
    name         TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
