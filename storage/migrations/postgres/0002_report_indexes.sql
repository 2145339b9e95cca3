-- Version 2: indexes for /sora-admin usage (per-guild time ranges) and the daily budget check.
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
CREATE INDEX ledger_guild_created ON ledger (guild_id, created_at);
