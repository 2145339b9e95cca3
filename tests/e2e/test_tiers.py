"""Role tiers (issue 15, item 1) through the local Discord: `/sora-admin tiers set|remove|show`, the most
generous of a member's tiered roles (roles from the interaction, no privileged intent), a refused duration
before any hold, `/sora balance` and `/sora help` saying which tier applies, the audit in `config show`, a role
deleted while tiered, a tier that would allow no duration. The ledger is verified after each."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.harness import InProcessBot, World, accepted, admin_as, assert_friendly, png, private_reply

CREATES = "/v1/videos/generations"


async def tiered(world: World) -> tuple[Any, Any, Any, Any]:
    """Roles Trial (4 s only, one at once) and Supporter (refill 500, up to 12 s); a trial member and one
    with both roles. Returns (trial role, supporter role, trial member, member with both)."""
    fake, gid = world.fake, world.guild.id
    trial, supporter = fake.add_role(gid, "Trial"), fake.add_role(gid, "Supporter")
    newbie, fan = fake.add_user("newbie"), fake.add_user("fan")
    fake.add_member(gid, newbie.id, roles=[trial.id])
    fake.add_member(gid, fan.id, roles=[trial.id, supporter.id])
    await private_reply(await admin_as(world, "config refill", amount=200, period="daily"))
    saved = await private_reply(await admin_as(world, "tiers set", role=trial.id, per_member=1, durations="4"))
    assert "Saved" in saved.content and "1 at once, 4 s" in saved.content, saved.content
    saved = await private_reply(await admin_as(world, "tiers set", role=supporter.id, refill=500,
                                               durations="4, 8,12"))
    assert "refill 500, 4/8/12 s" in saved.content, saved.content
    return trial, supporter, newbie, fan


async def sora(world: World, user: Any, path: str, **options: Any) -> str:
    inter = await world.fake.slash(world.guild.id, world.channel.id, user.id, f"sora {path}", options=options)
    return str((await private_reply(inter)).content)


async def test_a_tier_refuses_a_duration_before_any_hold_and_the_most_generous_applies(world: World,
                                                                                      bot: InProcessBot) -> None:
    trial, supporter, newbie, fan = await tiered(world)
    refused = await private_reply(await world.generate(user=newbie, duration=8))
    assert "don't allow 8-second videos" in refused.content and "4 s" in refused.content, refused.content
    assert "Nothing was charged" in refused.content
    assert_friendly(refused.content)
    assert await bot.db.fetchall("SELECT id FROM jobs") == [] and not world.sim.state.requests_to(CREATES)

    await accepted(await world.generate(user=fan, duration=12))  # Supporter's 12 s beats Trial's 4 s
    fan_balance = await bot.db.ledger.balance(world.guild.id, fan.id)
    assert (fan_balance.available, fan_balance.held) == (200, 300)  # topped up to Supporter's 500, then held
    await accepted(await world.generate(user=newbie, duration=4))
    newbie_balance = await bot.db.ledger.balance(world.guild.id, newbie.id)
    assert (newbie_balance.available, newbie_balance.held) == (100, 100)  # the server's refill (200)
    await bot.wait_finished(2)
    assert await bot.db.ledger.verify() == []

    text = await sora(world, fan, "balance")
    assert f"<@&{trial.id}>" in text and f"<@&{supporter.id}>" in text and "most generous" in text, text
    assert "topped up to 500 credits every day" in text, text
    text = await sora(world, world.member, "balance")
    assert "no tiered role" in text and "server's settings" in text, text
    text = await sora(world, newbie, "help")
    assert "Your limits:" in text and f"<@&{trial.id}>" in text and "videos of 4 s" in text, text


async def test_a_tiers_one_at_once_and_the_forms_offer_only_its_durations(world: World, bot: InProcessBot) -> None:
    _, _, newbie, _ = await tiered(world)
    await bot.db.guilds.update(world.guild.id, cooldown_seconds=0)
    world.sim.state.configure({"processing_seconds": 1000})
    await accepted(await world.generate(user=newbie))
    second = await private_reply(await world.generate(user=newbie))
    assert "1 video in progress" in second.content, second.content
    target = world.fake.post_user_message(world.channel.id, newbie.id, "",
                                          attachments=[("cat.png", png(800, 600), "image/png")])
    menu = await world.fake.context_menu(world.guild.id, world.channel.id, newbie.id, "Animate with Sora", target)
    await menu.wait_response(3)
    [duration] = [c["component"] for c in menu.modal["components"] if c["component"]["custom_id"] == "duration"]
    assert [o["value"] for o in duration["options"]] == ["4"]
    assert len(await bot.db.fetchall("SELECT id FROM ledger WHERE kind = 'hold'")) == 1
    assert await bot.db.ledger.verify() == []


async def test_tier_changes_are_audited_and_a_deleted_role_takes_its_tier(world: World, bot: InProcessBot) -> None:
    trial, supporter, newbie, _ = await tiered(world)
    shown = await private_reply(await admin_as(world, "config show"))
    assert f"<@{world.admin.id}> set <@&{supporter.id}> to refill 500, 4/8/12 s" in shown.content, shown.content

    world.fake.delete_role(world.guild.id, trial.id)  # Discord deletes the role; the bot hears GUILD_ROLE_DELETE
    async with asyncio.timeout(10):
        while any(t.role_id == trial.id for t in await bot.db.tiers.all(world.guild.id)):
            await asyncio.sleep(0.02)
    shown = await private_reply(await admin_as(world, "config show"))
    assert f"the bot removed the tier of <@&{trial.id}> (role deleted)" in shown.content, shown.content
    listing = await private_reply(await admin_as(world, "tiers show"))
    assert f"<@&{trial.id}>" not in listing.content and f"<@&{supporter.id}>" in listing.content
    await accepted(await world.generate(user=newbie, duration=8))  # no tier left: the server's settings
    await bot.wait_finished(1)

    removed = await private_reply(await admin_as(world, "tiers remove", role=supporter.id))
    assert "Removed" in removed.content
    again = await private_reply(await admin_as(world, "tiers remove", role=supporter.id))
    assert "has no tier" in again.content and "Nothing was changed" in again.content
    assert "No tiers" in (await private_reply(await admin_as(world, "tiers show"))).content
    assert await bot.db.ledger.verify() == []


async def test_a_tier_that_allows_no_duration_is_refused(world: World, bot: InProcessBot) -> None:
    role = world.fake.add_role(world.guild.id, "Empty")
    for durations, phrase in (("", "at least one duration"), (" , ", "at least one duration"),
                              ("0", "not a video length"), ("5,8", "not a video length")):
        answer = await private_reply(await admin_as(world, "tiers set", role=role.id, durations=durations))
        assert phrase in answer.content and "Nothing was changed" in answer.content, (durations, answer.content)
        assert_friendly(answer.content)
    nothing = await private_reply(await admin_as(world, "tiers set", role=role.id))
    assert "at least one of refill, per_member or durations" in nothing.content
    refused = await private_reply(await world.fake.slash(  # an override lets a member see it: refused anyway
        world.guild.id, world.channel.id, world.member.id, "sora-admin tiers set",
        options={"role": role.id, "durations": "4"}, bypass_permissions=True))
    assert "Manage Server" in refused.content
    assert await bot.db.tiers.all(world.guild.id) == []
