"""Commands registered exactly as PRODUCT.md names them, synced only when they changed, and by `sora-bot sync`."""

from __future__ import annotations

from typing import Any

import pytest
from fake_discord import Command, InteractionError

from tests.e2e.harness import InProcessBot, World, run_cli

SLASH, MESSAGE = 1, 3
SUB, GROUP = 1, 2
STRING, INTEGER, USER, CHANNEL, ROLE, ATTACHMENT = 3, 4, 6, 7, 8, 11
GUILD_CONTEXT = 0
MANAGE_GUILD = "32"


def by_name(options: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in options}


def command(world: World, name: str, ctype: int = SLASH, guild_id: int | None = None) -> Command:
    [cmd] = [c for c in world.fake.commands_in(guild_id) if c.name == name and c.type == ctype]
    return cmd


def shape(options: list[dict[str, Any]]) -> dict[str, Any]:
    """Subcommand tree as {name: nested shape} with leaves as (type, required)."""
    out: dict[str, Any] = {}
    for o in options:
        if o["type"] in (SUB, GROUP):
            out[o["name"]] = shape(o.get("options") or [])
        else:
            out[o["name"]] = (o["type"], bool(o.get("required")))
    return out


def assert_described(options: list[dict[str, Any]]) -> None:
    for o in options:
        assert o["description"] and o["description"] != "…", o["name"]
        assert_described(o.get("options") or [])


async def test_user_commands_as_the_product_names_them(world: World, bot: InProcessBot) -> None:
    assert sorted((c.name, c.type) for c in world.fake.commands_in(None)) == [
        ("Animate with Sora", MESSAGE), ("sora", SLASH), ("sora-admin", SLASH)]
    sora = command(world, "sora")
    assert sora.contexts == [GUILD_CONTEXT]
    assert sora.default_member_permissions is None
    assert shape(sora.options) == {
        "generate": {"prompt": (STRING, True), "duration": (INTEGER, False), "aspect_ratio": (STRING, False),
                     "image": (ATTACHMENT, False)},
        "balance": {}, "jobs": {}, "help": {},
    }
    generate = by_name(by_name(sora.options)["generate"]["options"])
    assert (generate["prompt"]["min_length"], generate["prompt"]["max_length"]) == (1, 5000)
    assert [(c["name"], c["value"]) for c in generate["duration"]["choices"]] == [
        ("4 s · 100 credits", 4), ("8 s · 200 credits", 8), ("12 s · 300 credits", 12)]
    assert [c["value"] for c in generate["aspect_ratio"]["choices"]] == ["16:9", "9:16"]
    assert_described(sora.options)

    animate = command(world, "Animate with Sora", MESSAGE)
    assert animate.contexts == [GUILD_CONTEXT]
    assert animate.options == []


async def test_admin_group_is_manage_server_only_and_guild_only(world: World, bot: InProcessBot) -> None:
    admin = command(world, "sora-admin")
    assert admin.default_member_permissions == MANAGE_GUILD
    assert admin.contexts == [GUILD_CONTEXT]
    assert admin.dm_permission is False
    assert shape(admin.options) == {
        "quota": {"set": {"user": (USER, True), "amount": (INTEGER, True)},
                  "add": {"user": (USER, True), "amount": (INTEGER, True)},
                  "show": {"user": (USER, True)}},
        "block": {"user": (USER, True), "reason": (STRING, False)},
        "unblock": {"user": (USER, True)},
        "refund": {"job": (STRING, True)},
        "config": {"show": {},
                   "defaults": {"starting_credits": (INTEGER, False), "default_duration": (INTEGER, False)},
                   "refill": {"amount": (INTEGER, True), "period": (STRING, True)},
                   "limits": {"per_member": (INTEGER, False), "cooldown": (INTEGER, False),
                              "daily_budget": (INTEGER, False), "server_jobs": (INTEGER, False)},
                   "channels": {"action": (STRING, True), "channel": (CHANNEL, False)},
                   "words": {"action": (STRING, True), "words": (STRING, False)}},
        "usage": {"days": (INTEGER, False)},
        "jobs": {},
        "status": {},
        "data": {"delete-member": {"user": (USER, True)}, "delete-server": {"confirm": (STRING, True)}},
        "tiers": {"set": {"role": (ROLE, True), "refill": (INTEGER, False), "per_member": (INTEGER, False),
                          "durations": (STRING, False)},
                  "remove": {"role": (ROLE, True)},
                  "show": {}},
    }
    options = by_name(admin.options)
    config = by_name(options["config"]["options"])
    refill = by_name(config["refill"]["options"])
    assert [c["value"] for c in refill["period"]["choices"]] == ["daily", "weekly", "monthly", "never"]
    quota_add = by_name(by_name(options["quota"]["options"])["add"]["options"])
    assert quota_add["amount"]["min_value"] < 0  # negative takes credits away
    assert_described(admin.options)


async def test_commands_are_not_offered_in_dms(world: World, bot: InProcessBot) -> None:
    for name in ("sora balance", "sora-admin config show"):
        with pytest.raises(InteractionError):
            await world.fake.slash(None, None, world.admin.id, name)


async def test_restart_syncs_only_when_definitions_differ(world: World) -> None:
    runner = InProcessBot(world)
    await runner.start()
    await runner.stop()
    assert world.fake.sync_count == 1
    versions = {c.id: c.version for c in world.fake.commands}

    await runner.start()  # same definitions: one GET, no write
    await runner.stop()
    assert world.fake.sync_count == 1
    assert {c.id: c.version for c in world.fake.commands} == versions
    assert len(world.fake.requests_to("GET", "/applications/{application_id}/commands")) == 2

    sora = command(world, "sora")
    sora.description = "an old description"  # what Discord holds is now out of date
    await runner.start()
    await runner.stop()
    assert world.fake.sync_count == 2
    assert command(world, "sora").description == "Make short AI videos with Sora 2"

    del world.fake.world.commands[command(world, "Animate with Sora", MESSAGE).id]  # a command missing
    await runner.start()
    await runner.stop()
    assert world.fake.sync_count == 3
    assert command(world, "Animate with Sora", MESSAGE).contexts == [GUILD_CONTEXT]


async def test_sync_cli_registers_globally_and_to_one_guild(world: World) -> None:
    code, out, err = await run_cli("sync", env=world.env(), cwd=world.tmp)
    assert code == 0, err
    assert "registered" in out
    assert sorted(c.name for c in world.fake.commands_in(None)) == ["Animate with Sora", "sora", "sora-admin"]
    assert world.fake.sync_count == 1
    assert world.fake.commands_in(world.guild.id) == []

    code, out, err = await run_cli("sync", "--guild", str(world.guild.id), env=world.env(), cwd=world.tmp)
    assert code == 0, err
    assert str(world.guild.id) in out
    assert sorted(c.name for c in world.fake.commands_in(world.guild.id)) == ["Animate with Sora", "sora",
                                                                               "sora-admin"]
    assert command(world, "sora-admin", guild_id=world.guild.id).default_member_permissions == MANAGE_GUILD
    assert world.fake.sync_count == 2
    assert "Traceback" not in err



async def test_dev_guild_commands_sync_once(world: World) -> None:
    runner = InProcessBot(world)
    await runner.start()  # an earlier global registration
    await runner.stop()
    assert world.fake.sync_count == 1

    world.extra_env["DEV_GUILD_ID"] = str(world.guild.id)  # now developing against one server
    for _ in range(2):
        await runner.start()
        await runner.stop()
    names = sorted(c.name for c in world.fake.commands_in(world.guild.id))
    assert names == ["Animate with Sora", "sora", "sora-admin"]
    assert world.fake.sync_count == 2  # the guild once, then never again while nothing changes
    assert command(world, "sora-admin", guild_id=world.guild.id).default_member_permissions == MANAGE_GUILD
