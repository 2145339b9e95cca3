-- Creates bill the operator and the API has no idempotency key, so the job row says whether a create's answer
-- is still outstanding (create_inflight = 1 from just before the request is sent until an answer proves the
-- outcome) and when the last create was sent (submitted_at, which JOB_TIMEOUT is measured from). A restarted
-- bot that finds create_inflight = 1 knows a billed task may exist and must not send the create again blindly.
ALTER TABLE jobs ADD COLUMN create_inflight INTEGER NOT NULL DEFAULT 0 CHECK (create_inflight IN (0, 1));
ALTER TABLE jobs ADD COLUMN submitted_at REAL;
