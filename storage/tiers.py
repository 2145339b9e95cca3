"""Role tiers: what members with a role get instead of the server's defaults (refill, jobs at once, durations).

A member with several tiered roles gets the most generous value of each aspect among the tiers that set it;
an aspect no tier of theirs sets, and a member with no tiered role, follow the server's settings. Roles come
from the member's interactions (no privileged intent): the latest seen are remembered (`member_roles`) so that
a refill applied where no interaction is at hand (a delivery, an admin's quota command) follows the same tier.

Written against storage.conn, so it runs unchanged on SQLite and PostgreSQL (migration 0006 on both).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.conn import GUILD, SETTINGS, Conn, Row, fetchall, fetchone
from storage.guilds import DURATIONS, GuildSettings, settings_in

if TYPE_CHECKING:
    from storage.db import Database

MAX_TIERS = 25  # tiers per server
MAX_ROLES = 250  # roles remembered per member (Discord allows 250)


@dataclass(frozen=True, slots=True)
class Tier:
    """One role's tier; None = that aspect follows the server's settings."""

    role_id: int
    refill_amount: int | None = None
    max_jobs_per_member: int | None = None
    durations: tuple[int, ...] | None = None
    updated_by: int | None = None
    updated_at: float = 0.0

    def describe(self) -> str:
        """Plain words for admins and members, e.g. "refill 500, 3 at once, 4/8 s"."""
        parts = []
        if self.refill_amount is not None:
            parts.append(f"refill {self.refill_amount:,}")
        if self.max_jobs_per_member is not None:
            parts.append(f"{self.max_jobs_per_member} at once")
        if self.durations is not None:
            parts.append("/".join(map(str, self.durations)) + " s")
        return ", ".join(parts) or "nothing set"


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What a member gets: from their tiers where one sets the aspect, else from the server (`tiers` = which
    tiered roles they have, in the server's order)."""

    refill_amount: int
    max_jobs_per_member: int
    durations: tuple[int, ...]
    tiers: tuple[Tier, ...] = ()

    def apply(self, settings: GuildSettings) -> GuildSettings:
        """The server's settings as they hold for this member (refill and jobs at once)."""
        return dataclasses.replace(settings, refill_amount=self.refill_amount,
                                   max_jobs_per_member=self.max_jobs_per_member)


def parse_durations(text: str) -> tuple[int, ...]:
    """`"4,8"` → (4, 8): the durations a tier allows, sorted, at least one.

    Raises:
        ValueError: with a sentence for the admin (no durations, or one the model does not make).
    """
    picked: set[int] = set()
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or int(part) not in DURATIONS:
            raise ValueError(f"{part!r} is not a video length. Durations are some of 4, 8 and 12, like `4,8`.")
        picked.add(int(part))
    if not picked:
        raise ValueError("A tier must allow at least one duration (some of 4, 8 and 12, like `4,8`).")
    return tuple(sorted(picked))


def _from_row(row: Row) -> Tier:
    durations = tuple(int(d) for d in str(row["durations"]).split(",")) if row["durations"] else None
    return Tier(int(row["role_id"]), row["refill_amount"], row["max_jobs_per_member"], durations,
                row["updated_by"], float(row["updated_at"]))


def entitlement(settings: GuildSettings, tiers: Iterable[Tier], role_ids: Iterable[int]) -> Entitlement:
    """The most generous of each aspect among the member's tiers that set it; the server's where none does."""
    roles = set(role_ids)
    mine = tuple(t for t in tiers if t.role_id in roles)
    refills = [t.refill_amount for t in mine if t.refill_amount is not None]
    at_once = [t.max_jobs_per_member for t in mine if t.max_jobs_per_member is not None]
    allowed = {d for t in mine if t.durations is not None for d in t.durations}
    return Entitlement(
        refill_amount=max(refills) if refills else settings.refill_amount,
        max_jobs_per_member=max(at_once) if at_once else settings.max_jobs_per_member,
        durations=tuple(sorted(allowed)) if allowed else DURATIONS,
        tiers=mine,
    )


async def tiers_in(conn: Conn, guild_id: int) -> list[Tier]:
    rows = await fetchall(conn, "SELECT * FROM role_tiers WHERE guild_id = ? ORDER BY role_id", (guild_id,))
    return [_from_row(r) for r in rows]


async def member_entitlement_in(conn: Conn, settings: GuildSettings, user_id: int,
                                role_ids: Sequence[int] | None) -> Entitlement:
    """The member's entitlement inside the caller's transaction; `role_ids` None = the roles last seen."""
    tiers = await tiers_in(conn, settings.guild_id)
    if not tiers:
        return entitlement(settings, (), ())
    if role_ids is None:
        row = await fetchone(conn, "SELECT role_ids FROM member_roles WHERE guild_id = ? AND user_id = ?",
                             (settings.guild_id, user_id))
        role_ids = [int(r) for r in json.loads(row["role_ids"])] if row is not None else []
    return entitlement(settings, tiers, role_ids)


async def member_settings_in(conn: Conn, settings: GuildSettings, user_id: int,
                             role_ids: Sequence[int] | None = None) -> tuple[GuildSettings, tuple[int, ...]]:
    """The server's settings as they hold for this member, and the durations they may choose."""
    found = await member_entitlement_in(conn, settings, user_id, role_ids)
    return found.apply(settings), found.durations


async def remember_roles_in(conn: Conn, now: float, guild_id: int, user_id: int, role_ids: Sequence[int]) -> None:
    """Keep the member's roles as this interaction showed them (inside a write transaction)."""
    await conn.execute(
        "INSERT INTO member_roles (guild_id, user_id, role_ids, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (guild_id, user_id) DO UPDATE SET role_ids = excluded.role_ids, updated_at = excluded.updated_at",
        (guild_id, user_id, json.dumps(sorted({int(r) for r in role_ids})[:MAX_ROLES]), now),
    )


class Tiers:
    """Role tiers and their audit (`db.tiers`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self, guild_id: int) -> list[Tier]:
        async with self._db.snapshot() as conn:
            return await tiers_in(conn, guild_id)

    async def for_member(self, guild_id: int, user_id: int, role_ids: Sequence[int] | None) -> Entitlement:
        """What this member gets here now (read-only), with the tiers that gave it."""
        async with self._db.snapshot() as conn:
            settings = await settings_in(conn, guild_id)
            return await member_entitlement_in(conn, settings, user_id, role_ids)

    async def set(self, guild_id: int, tier: Tier, actor_id: int) -> Tier:
        """Create or replace a role's tier (its unset aspects follow the server); audited.

        Raises:
            ValueError: nothing set, a value out of range, or too many tiers; the sentence is for the admin.
        """
        _validate(tier)
        async with self._db.write() as conn:
            await conn.lock(GUILD, guild_id, shared=True)
            await conn.lock(SETTINGS, guild_id)
            now = self._db.now()
            existing = {t.role_id for t in await tiers_in(conn, guild_id)}
            if tier.role_id not in existing and len(existing) >= MAX_TIERS:
                raise ValueError(f"A server can have at most {MAX_TIERS} tiers; remove one first.")
            durations = ",".join(map(str, tier.durations)) if tier.durations is not None else None
            await conn.execute(
                "INSERT INTO role_tiers (guild_id, role_id, refill_amount, max_jobs_per_member, durations, "
                "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id) DO UPDATE SET "
                "refill_amount = excluded.refill_amount, max_jobs_per_member = excluded.max_jobs_per_member, "
                "durations = excluded.durations, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (guild_id, tier.role_id, tier.refill_amount, tier.max_jobs_per_member, durations, actor_id, now),
            )
            await _audit(conn, now, guild_id, tier.role_id, actor_id, "set", tier.describe())
        return dataclasses.replace(tier, updated_by=actor_id, updated_at=now)

    async def remove(self, guild_id: int, role_id: int, actor_id: int | None, why: str = "") -> bool:
        """Remove a role's tier (actor None: the bot, because Discord deleted the role); False if none."""
        async with self._db.write() as conn:
            await conn.lock(GUILD, guild_id, shared=True)
            await conn.lock(SETTINGS, guild_id)
            result = await conn.execute("DELETE FROM role_tiers WHERE guild_id = ? AND role_id = ?",
                                        (guild_id, role_id))
            if result.rowcount:
                await _audit(conn, self._db.now(), guild_id, role_id, actor_id, "remove", why)
            return result.rowcount > 0

    async def audit(self, guild_id: int, limit: int = 5) -> list[tuple[int, int | None, str, str, float]]:
        """The latest tier changes, newest first: (role id, actor id, action, detail, when)."""
        rows = await self._db.fetchall(
            "SELECT role_id, actor_id, action, detail, created_at FROM tier_audit WHERE guild_id = ? "
            "ORDER BY id DESC LIMIT ?", (guild_id, max(0, int(limit))))
        return [(int(r["role_id"]), r["actor_id"], str(r["action"]), str(r["detail"]), float(r["created_at"]))
                for r in rows]


async def _audit(conn: Conn, now: float, guild_id: int, role_id: int, actor_id: int | None, action: str,
                 detail: str) -> None:
    await conn.execute(
        "INSERT INTO tier_audit (guild_id, role_id, actor_id, action, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (guild_id, role_id, actor_id, action, detail[:200], now))


def _validate(tier: Tier) -> None:
    if tier.refill_amount is None and tier.max_jobs_per_member is None and tier.durations is None:
        raise ValueError("Give at least one of refill, per_member or durations for the tier.")
    if tier.refill_amount is not None and not 0 <= tier.refill_amount <= 1_000_000:
        raise ValueError("The refill amount must be a whole number from 0 to 1,000,000.")
    if tier.max_jobs_per_member is not None and not 1 <= tier.max_jobs_per_member <= 50:
        raise ValueError("Jobs at once must be a whole number from 1 to 50.")
    if tier.durations is not None and (not tier.durations or any(d not in DURATIONS for d in tier.durations)):
        raise ValueError("A tier must allow at least one duration (some of 4, 8 and 12).")
