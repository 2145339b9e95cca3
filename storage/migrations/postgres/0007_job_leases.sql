-- Jobs are owned by the database: a claim is a lease (owner, lease_expires_at) and a fencing number that grows on
-- every claim; every write the runner makes checks owner and fence under the row's lock. Same as
-- ../0007_job_leases.sql.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN fence BIGINT NOT NULL DEFAULT 0 CHECK (fence >= 0);
CREATE INDEX jobs_owner ON jobs (owner, seq);

-- The processes sharing the work, each with its heartbeat: how many are alive decides each one's fair share.
CREATE TABLE processes (
    name         TEXT PRIMARY KEY,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
