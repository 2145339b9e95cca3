-- Role tiers (issue 15, item 1): what members with a role get instead of the server's defaults. A NULL column
-- means "the server's setting" for that aspect; a member with several tiered roles gets the most generous value
-- of each (storage/tiers.py). `durations` lists the allowed seconds in order and is never empty: a tier that
-- allows no video at all cannot be stored.
CREATE TABLE role_tiers (
    guild_id            INTEGER NOT NULL,
    role_id             INTEGER NOT NULL,
    refill_amount       INTEGER CHECK (refill_amount IS NULL OR (refill_amount BETWEEN 0 AND 1000000)),
    max_jobs_per_member INTEGER CHECK (max_jobs_per_member IS NULL OR (max_jobs_per_member BETWEEN 1 AND 50)),
    durations           TEXT    CHECK (durations IS NULL OR durations IN ('4', '8', '12', '4,8', '4,12', '8,12',
                                                                          '4,8,12')),
    updated_by          INTEGER,
    updated_at          REAL    NOT NULL,
    PRIMARY KEY (guild_id, role_id)
);

-- Who changed which tier, and to what (`config show` reads the latest). actor_id NULL: the bot itself removed
-- the tier of a role Discord deleted.
CREATE TABLE tier_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    actor_id   INTEGER,
    action     TEXT    NOT NULL CHECK (action IN ('set', 'remove')),
    detail     TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL
);
CREATE INDEX tier_audit_by_guild ON tier_audit (guild_id, id);

-- A member's roles as Discord last showed them on one of their interactions (no privileged intent needed), so
-- a refill applied where no interaction is at hand (a delivery's balance, an admin's quota command) still
-- follows the member's tier.
CREATE TABLE member_roles (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    role_ids   TEXT    NOT NULL DEFAULT '[]',
    updated_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
