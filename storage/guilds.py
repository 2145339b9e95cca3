"""Per-server settings with safe defaults, and the per-server blocklist."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.conn import GUILD, SETTINGS, Conn, Row, fetchone
from storage.periods import PERIODS

if TYPE_CHECKING:
    from storage.db import Database

DURATIONS = (4, 8, 12)  # mirrors bot.pricing.DURATIONS; storage does not import the bot
MAX_CHANNELS = 50
MAX_WORDS = 200
MAX_WORD_LENGTH = 100


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's rules; a server nobody configured gets these defaults, which spend little."""

    guild_id: int
    starting_credits: int = 200
    default_duration: int = 4
    refill_amount: int = 0
    refill_period: str = "never"  # daily | weekly | monthly | never
    max_jobs_per_member: int = 2  # jobs in progress at once per member (more are refused)
    cooldown_seconds: int = 30
    daily_budget: int = 0  # credits per UTC day for the whole server; 0 = no limit
    max_jobs_per_guild: int = 5  # jobs running at once in the server (more wait in the queue)
    allowed_channel_ids: tuple[int, ...] = ()  # empty = everywhere
    banned_words: tuple[str, ...] = ()


_INT_LIMITS: dict[str, tuple[int, int, str]] = {
    "starting_credits": (0, 1_000_000, "Starting credits"),
    "refill_amount": (0, 1_000_000, "The refill amount"),
    "max_jobs_per_member": (1, 50, "Jobs at once per member"),
    "cooldown_seconds": (0, 86_400, "The cooldown"),
    "daily_budget": (0, 100_000_000, "The daily budget"),
    "max_jobs_per_guild": (1, 100, "Jobs running at once in the server"),
}
_COLUMNS = tuple(f.name for f in dataclasses.fields(GuildSettings) if f.name != "guild_id")


def validate(changes: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise settings an admin wants to change.

    Raises:
        ValueError: with a sentence an admin can act on.
    """
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _INT_LIMITS:
            low, high, label = _INT_LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{label} must be a whole number from {low:,} to {high:,}.")
            clean[name] = value
        elif name == "default_duration":
            if isinstance(value, bool) or value not in DURATIONS:
                raise ValueError(f"The default duration must be one of {', '.join(map(str, DURATIONS))} seconds.")
            clean[name] = int(value)
        elif name == "refill_period":
            if value not in PERIODS:
                raise ValueError(f"The refill period must be one of: {', '.join(PERIODS)}.")
            clean[name] = value
        elif name == "allowed_channel_ids":
            clean[name] = _channels(value)
        elif name == "banned_words":
            clean[name] = _words(value)
        else:
            raise ValueError(f"There is no server setting called {name!r}.")
    return clean


def _channels(value: Iterable[int]) -> tuple[int, ...]:
    ids = tuple(dict.fromkeys(value))
    if any(isinstance(i, bool) or not isinstance(i, int) or i <= 0 for i in ids):
        raise ValueError("Channels must be given as channel ids.")
    if len(ids) > MAX_CHANNELS:
        raise ValueError(f"At most {MAX_CHANNELS} channels can be allowed.")
    return ids


def _words(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError("Banned words must be given as a list.")
    words = tuple(dict.fromkeys(w.strip() for w in value if isinstance(w, str) and w.strip()))
    if len(words) > MAX_WORDS:
        raise ValueError(f"At most {MAX_WORDS} banned words or phrases can be set.")
    if any(len(w) > MAX_WORD_LENGTH for w in words):
        raise ValueError(f"Each banned word or phrase can be at most {MAX_WORD_LENGTH} characters long.")
    return words


def _from_row(guild_id: int, row: Row | None) -> GuildSettings:
    if row is None:
        return GuildSettings(guild_id=guild_id)
    values: dict[str, Any] = {name: row[name] for name in _COLUMNS}
    values["allowed_channel_ids"] = tuple(int(i) for i in json.loads(row["allowed_channel_ids"]))
    values["banned_words"] = tuple(str(w) for w in json.loads(row["banned_words"]))
    return GuildSettings(guild_id=guild_id, **values)


async def settings_in(conn: Conn, guild_id: int) -> GuildSettings:
    """Read a server's settings inside a transaction the caller holds."""
    return _from_row(guild_id, await fetchone(conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)))


class Guilds:
    """Server settings and blocklist (`db.guilds`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, guild_id: int) -> GuildSettings:
        """The server's settings, or the defaults if it was never configured."""
        return _from_row(guild_id, await self._db.fetchone("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)))

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings and return them all.

        Raises:
            ValueError: a value is out of range or a name is unknown; the message is for the admin.
        """
        clean = validate(changes)
        async with self._db.write() as conn:
            await conn.lock(GUILD, guild_id, shared=True)
            await conn.lock(SETTINGS, guild_id)  # read, merge, write: one admin's change at a time
            current = await settings_in(conn, guild_id)
            updated = dataclasses.replace(current, **clean)
            values = [getattr(updated, name) for name in _COLUMNS]
            values = [json.dumps(list(v)) if isinstance(v, tuple) else v for v in values]
            columns = ", ".join(_COLUMNS)
            marks = ", ".join("?" for _ in _COLUMNS)
            assignments = ", ".join(f"{c} = excluded.{c}" for c in (*_COLUMNS, "updated_at"))
            await conn.execute(
                f"INSERT INTO guild_settings (guild_id, {columns}, updated_at) VALUES (?, {marks}, ?) "
                f"ON CONFLICT (guild_id) DO UPDATE SET {assignments}",
                (guild_id, *values, self._db.now()),
            )
        return updated

    async def block(self, guild_id: int, user_id: int, reason: str, actor_id: int | None) -> None:
        """Stop a member from generating in this server (replaces an earlier reason)."""
        async with self._db.write() as conn:
            await conn.lock(GUILD, guild_id, shared=True)
            await conn.execute(
                "INSERT INTO blocked_members (guild_id, user_id, reason, actor_id, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason, actor_id = excluded.actor_id, "
                "created_at = excluded.created_at",
                (guild_id, user_id, reason or "", actor_id, self._db.now()),
            )

    async def unblock(self, guild_id: int, user_id: int) -> bool:
        """Let a member generate again; False if they were not blocked."""
        async with self._db.write() as conn:
            cursor = await conn.execute(
                "DELETE FROM blocked_members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            return cursor.rowcount > 0

    async def is_blocked(self, guild_id: int, user_id: int) -> str | None:
        """The block's reason ("" when none was given), or None if the member is not blocked."""
        row = await self._db.fetchone(
            "SELECT reason FROM blocked_members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return None if row is None else str(row["reason"])


async def blocked_reason_in(conn: Conn, guild_id: int, user_id: int) -> str | None:
    """The block reason inside a transaction the caller holds, or None."""
    row = await fetchone(conn, "SELECT reason FROM blocked_members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
    return None if row is None else str(row["reason"])
