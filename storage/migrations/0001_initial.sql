-- sora-bot schema, version 1.
-- Money rules live here, not only in Python: the ledger is append-only, every job has at most one hold,
-- one settlement (charge OR release) and one admin refund, and balances can never go negative.
-- Times are UNIX seconds (REAL, UTC). Discord ids are INTEGER (64-bit snowflakes fit).

CREATE TABLE guild_settings (
    guild_id            INTEGER PRIMARY KEY,
    starting_credits    INTEGER NOT NULL DEFAULT 200 CHECK (starting_credits >= 0),
    default_duration    INTEGER NOT NULL DEFAULT 4 CHECK (default_duration IN (4, 8, 12)),
    refill_amount       INTEGER NOT NULL DEFAULT 0 CHECK (refill_amount >= 0),
    refill_period       TEXT    NOT NULL DEFAULT 'never'
                        CHECK (refill_period IN ('daily', 'weekly', 'monthly', 'never')),
    max_jobs_per_member INTEGER NOT NULL DEFAULT 2 CHECK (max_jobs_per_member >= 1),
    cooldown_seconds    INTEGER NOT NULL DEFAULT 30 CHECK (cooldown_seconds >= 0),
    daily_budget        INTEGER NOT NULL DEFAULT 0 CHECK (daily_budget >= 0),
    max_jobs_per_guild  INTEGER NOT NULL DEFAULT 5 CHECK (max_jobs_per_guild >= 1),
    allowed_channel_ids TEXT    NOT NULL DEFAULT '[]',  -- JSON array of channel ids
    banned_words        TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    updated_at          REAL    NOT NULL
);

CREATE TABLE blocked_members (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    actor_id   INTEGER,
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- A cache of the ledger's sums, maintained by the ledger_apply trigger in the same statement as the entry.
CREATE TABLE balances (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    available  INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- Periods (e.g. D2025-01-31, W2025-W05, M2025-01) already considered for a lazy refill, whether or not a
-- top-up was needed: a member is topped up at most once per period.
CREATE TABLE refill_periods (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    period_key TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id, period_key)
);

CREATE TABLE jobs (
    seq                          INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order, never reused
    id                           TEXT    NOT NULL UNIQUE,
    guild_id                     INTEGER NOT NULL,
    channel_id                   INTEGER NOT NULL,
    user_id                      INTEGER NOT NULL,
    prompt                       TEXT    NOT NULL,
    duration                     INTEGER NOT NULL CHECK (duration > 0),
    aspect_ratio                 TEXT    NOT NULL,
    image_url                    TEXT,
    cost                         INTEGER NOT NULL CHECK (cost > 0),
    state                        TEXT    NOT NULL DEFAULT 'queued'
                                 CHECK (state IN ('queued', 'submitting', 'running', 'completed', 'delivered', 'failed')),
    task_id                      TEXT,
    callback_token               TEXT    NOT NULL UNIQUE,
    result_url                   TEXT,
    result_expires_at            REAL,
    delivered_message_url        TEXT,
    status_message_id            INTEGER,
    status_channel_id            INTEGER,
    interaction_application_id   INTEGER,
    interaction_token            TEXT,
    interaction_token_expires_at REAL,
    error_code                   TEXT,
    error_message                TEXT,
    attempts                     INTEGER NOT NULL DEFAULT 0,
    created_at                   REAL    NOT NULL,
    updated_at                   REAL    NOT NULL,
    finished_at                  REAL
);
CREATE INDEX jobs_member ON jobs (guild_id, user_id, seq);
CREATE INDEX jobs_state ON jobs (state, seq);

CREATE TABLE ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('grant', 'refill', 'adjust', 'hold', 'charge', 'release', 'refund')),
    delta_available INTEGER NOT NULL,
    delta_held      INTEGER NOT NULL,
    job_id          TEXT REFERENCES jobs (id),
    actor_id        INTEGER,
    reason          TEXT    NOT NULL DEFAULT '',
    period_key      TEXT,
    created_at      REAL    NOT NULL,
    -- The shape of each kind of entry (see docs/ARCHITECTURE.md, "storage").
    CHECK (
        (kind IN ('grant', 'refill') AND delta_available >= 0 AND delta_held = 0 AND job_id IS NULL)
        OR (kind = 'adjust' AND delta_held = 0 AND job_id IS NULL)
        OR (kind = 'hold' AND delta_held > 0 AND delta_available = -delta_held AND job_id IS NOT NULL)
        OR (kind = 'charge' AND delta_held < 0 AND delta_available = 0 AND job_id IS NOT NULL)
        OR (kind = 'release' AND delta_held < 0 AND delta_available = -delta_held AND job_id IS NOT NULL)
        OR (kind = 'refund' AND delta_available > 0 AND delta_held = 0 AND job_id IS NOT NULL)
    ),
    CHECK ((kind = 'refill') = (period_key IS NOT NULL))
);
CREATE INDEX ledger_member ON ledger (guild_id, user_id, id);
CREATE INDEX ledger_job ON ledger (job_id);
CREATE UNIQUE INDEX ledger_one_hold ON ledger (job_id) WHERE kind = 'hold';
CREATE UNIQUE INDEX ledger_one_settlement ON ledger (job_id) WHERE kind IN ('charge', 'release');
CREATE UNIQUE INDEX ledger_one_refund ON ledger (job_id) WHERE kind = 'refund';
CREATE UNIQUE INDEX ledger_one_grant ON ledger (guild_id, user_id) WHERE kind = 'grant';
CREATE UNIQUE INDEX ledger_one_refill ON ledger (guild_id, user_id, period_key) WHERE kind = 'refill';

-- Job-bound entries must match their job: same member, the job's cost, and the right predecessor.
CREATE TRIGGER ledger_hold_matches_job BEFORE INSERT ON ledger
WHEN NEW.kind = 'hold' AND NOT EXISTS (
    SELECT 1 FROM jobs j
    WHERE j.id = NEW.job_id AND j.guild_id = NEW.guild_id AND j.user_id = NEW.user_id AND j.cost = NEW.delta_held
)
BEGIN
    SELECT RAISE(ABORT, 'hold does not match its job');
END;

CREATE TRIGGER ledger_settlement_needs_hold BEFORE INSERT ON ledger
WHEN NEW.kind IN ('charge', 'release') AND NOT EXISTS (
    SELECT 1 FROM ledger h
    WHERE h.job_id = NEW.job_id AND h.kind = 'hold' AND h.delta_held = -NEW.delta_held
      AND h.guild_id = NEW.guild_id AND h.user_id = NEW.user_id
)
BEGIN
    SELECT RAISE(ABORT, 'settlement without a matching hold');
END;

CREATE TRIGGER ledger_refund_needs_charge BEFORE INSERT ON ledger
WHEN NEW.kind = 'refund' AND NOT EXISTS (
    SELECT 1 FROM ledger c
    WHERE c.job_id = NEW.job_id AND c.kind = 'charge' AND c.delta_held = -NEW.delta_available
      AND c.guild_id = NEW.guild_id AND c.user_id = NEW.user_id
)
BEGIN
    SELECT RAISE(ABORT, 'refund without a matching charge');
END;

-- The balance cache moves with every entry; the CHECKs on balances then refuse any overspend.
CREATE TRIGGER ledger_apply AFTER INSERT ON ledger
BEGIN
    INSERT OR IGNORE INTO balances (guild_id, user_id, available, held, created_at)
    VALUES (NEW.guild_id, NEW.user_id, 0, 0, NEW.created_at);
    UPDATE balances
    SET available = available + NEW.delta_available, held = held + NEW.delta_held
    WHERE guild_id = NEW.guild_id AND user_id = NEW.user_id;
END;

-- Append-only. The one exception is erasing a whole member's or guild's data (storage/reports.py): that
-- transaction first writes a permit into ledger_erasure, deletes, and removes the permit before committing.
CREATE TABLE ledger_erasure (
    guild_id INTEGER NOT NULL,
    user_id  INTEGER  -- NULL: the whole guild
);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_erasure e
    WHERE e.guild_id = OLD.guild_id AND (e.user_id IS NULL OR e.user_id = OLD.user_id)
)
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- Job states move forward only, and a job can only finish once its hold is settled.
CREATE TRIGGER jobs_state_forward BEFORE UPDATE OF state ON jobs
WHEN NEW.state <> OLD.state AND (OLD.state || '>' || NEW.state) NOT IN (
    'queued>submitting', 'queued>failed',
    'submitting>queued', 'submitting>running', 'submitting>failed',
    'running>completed', 'running>failed',
    'completed>delivered', 'completed>failed'
)
BEGIN
    SELECT RAISE(ABORT, 'illegal job state transition');
END;

CREATE TRIGGER jobs_finish_needs_settlement BEFORE UPDATE OF state ON jobs
WHEN NEW.state IN ('delivered', 'failed') AND NOT EXISTS (
    SELECT 1 FROM ledger l WHERE l.job_id = NEW.id AND l.kind IN ('charge', 'release')
)
BEGIN
    SELECT RAISE(ABORT, 'a job cannot finish before its hold is settled');
END;

CREATE TRIGGER jobs_failed_never_charged BEFORE UPDATE OF state ON jobs
WHEN NEW.state = 'failed' AND EXISTS (
    SELECT 1 FROM ledger l WHERE l.job_id = NEW.id AND l.kind = 'charge'
)
BEGIN
    SELECT RAISE(ABORT, 'a charged job cannot fail');
END;
