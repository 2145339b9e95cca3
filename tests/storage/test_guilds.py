"""Server settings and the blocklist."""

from __future__ import annotations

import pytest

from storage.db import Database
from storage.guilds import GuildSettings

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD


async def test_unconfigured_server_gets_safe_defaults(db: Database) -> None:
    settings = await db.guilds.get(GUILD)
    assert settings == GuildSettings(guild_id=GUILD)
    assert (settings.starting_credits, settings.default_duration, settings.refill_period) == (200, 4, "never")
    assert (settings.max_jobs_per_member, settings.cooldown_seconds, settings.daily_budget) == (2, 30, 0)
    assert settings.max_jobs_per_guild == 5
    assert settings.allowed_channel_ids == ()
    assert settings.banned_words == ()


async def test_update_persists_and_is_per_server(db: Database) -> None:
    updated = await db.guilds.update(GUILD, refill_amount=300, refill_period="weekly", allowed_channel_ids=[5, 6, 5],
                                     banned_words=[" Gore ", "", "gore", "blood"])
    assert updated.refill_amount == 300
    assert updated.allowed_channel_ids == (5, 6)
    assert updated.banned_words == ("Gore", "gore", "blood")
    assert await db.guilds.get(GUILD) == updated
    assert await db.guilds.get(OTHER_GUILD) == GuildSettings(guild_id=OTHER_GUILD)
    again = await db.guilds.update(GUILD, cooldown_seconds=0)
    assert again.refill_amount == 300 and again.cooldown_seconds == 0


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"starting_credits": -1}, "Starting credits"),
        ({"default_duration": 5}, "default duration"),
        ({"default_duration": True}, "default duration"),
        ({"refill_period": "hourly"}, "refill period"),
        ({"max_jobs_per_member": 0}, "Jobs at once"),
        ({"cooldown_seconds": 1.5}, "cooldown"),
        ({"daily_budget": True}, "daily budget"),
        ({"max_jobs_per_guild": 1000}, "running at once"),
        ({"allowed_channel_ids": [-3]}, "channel ids"),
        ({"banned_words": "gore"}, "list"),
        ({"colour": "red"}, "no server setting"),
    ],
)
async def test_update_refuses_bad_values_with_a_friendly_message(db: Database, changes: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        await db.guilds.update(GUILD, **changes)
    assert await db.guilds.get(GUILD) == GuildSettings(guild_id=GUILD)


async def test_block_and_unblock(db: Database) -> None:
    assert await db.guilds.is_blocked(GUILD, ALICE) is None
    await db.guilds.block(GUILD, ALICE, "", actor_id=BOB)
    assert await db.guilds.is_blocked(GUILD, ALICE) == ""
    await db.guilds.block(GUILD, ALICE, "spam", actor_id=BOB)
    assert await db.guilds.is_blocked(GUILD, ALICE) == "spam"
    assert await db.guilds.is_blocked(OTHER_GUILD, ALICE) is None
    assert await db.guilds.unblock(GUILD, ALICE) is True
    assert await db.guilds.unblock(GUILD, ALICE) is False
    assert await db.guilds.is_blocked(GUILD, ALICE) is None
