"""Every `/sora-admin` command end to end: private answers, effects in the database and the ledger, permissions,
one server's data kept out of another's, and no pings from user-supplied text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest
from fake_discord import InteractionError

from tests.e2e.harness import MANAGE_GUILD, InProcessBot, World, admin_as, both_backends, private_reply

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_PINGS = {"parse": []}


async def admin(world: World, path: str, by: Any = None, **options: Any) -> Any:
    """Run an admin command and return its final private answer, checked to ping nobody."""
    message = await private_reply(await admin_as(world, path, by=by, **options))
    assert message.allowed_mentions == NO_PINGS, (path, message.allowed_mentions)
    assert "Traceback" not in message.content
    return message


async def deliver(world: World, bot: InProcessBot, user: Any, count: int) -> Any:
    """One 4 s video for `user`, delivered; returns the job."""
    answer = await private_reply(await world.generate(user=user, duration=4))
    assert "held" in answer.content, answer.content
    jobs = await bot.wait_finished(count)
    job = jobs[-1]
    assert job.state == "delivered", job.error_message
    return job


@dataclass
class Server:
    guild: Any
    channel: Any
    admin: Any
    member: Any


async def second_server(world: World, bot: InProcessBot) -> Server:
    fake = world.fake
    guild = fake.add_guild("Other Server")
    channel = fake.add_channel(guild.id, "elsewhere")
    owner = fake.add_user("admin-b")
    fake.add_member(guild.id, owner.id, permissions=MANAGE_GUILD)
    member = fake.add_user("member-b")
    fake.add_member(guild.id, member.id)
    await fake.wait_for(lambda: bot.bot is not None and bot.bot.get_guild(guild.id) is not None, recheck=0.05,
                        what="bot sees the second server")
    return Server(guild, channel, owner, member)


async def ledger_rows(bot: InProcessBot, guild_id: int, user_id: int | None = None) -> list[Any]:
    if user_id is None:
        return await bot.db.fetchall("SELECT * FROM ledger WHERE guild_id = ? ORDER BY id", (guild_id,))
    return await bot.db.fetchall("SELECT * FROM ledger WHERE guild_id = ? AND user_id = ? ORDER BY id",
                                 (guild_id, user_id))


# ---- quota ---------------------------------------------------------------------------------------------------


@both_backends
async def test_quota_set_add_show(world: World, bot: InProcessBot) -> None:
    g, m = world.guild.id, world.member.id
    answer = await admin(world, "quota set", user=m, amount=50)
    assert "50 credits" in answer.content
    assert (await bot.db.ledger.balance(g, m)).available == 50

    answer = await admin(world, "quota add", user=m, amount=30)
    assert "80 credits" in answer.content and "only" not in answer.content
    answer = await admin(world, "quota add", user=m, amount=-500)  # more than they have: clamped at 0, and told
    assert "0 credits" in answer.content
    assert "only 80 could be taken" in answer.content and "below 0" in answer.content
    assert (await bot.db.ledger.balance(g, m)).available == 0

    rows = await ledger_rows(bot, g, m)
    assert [(r["kind"], r["delta_available"]) for r in rows] == [("grant", 200), ("adjust", -150), ("adjust", 30),
                                                                 ("adjust", -80)]
    assert [r["actor_id"] for r in rows[1:]] == [world.admin.id] * 3
    assert await bot.db.ledger.verify() == []

    answer = await admin(world, "quota show", user=m)
    assert "**0 credits** available" in answer.content
    assert answer.content.count(f"by <@{world.admin.id}>") == 3
    assert "+30/+0" in answer.content and "-80/+0" in answer.content and "+200/+0" in answer.content

    answer = await admin(world, "quota add", user=m, amount=0)
    assert "changes nothing" in answer.content
    assert len(await ledger_rows(bot, g, m)) == 4


async def test_quota_show_of_a_member_with_a_delivered_job(world: World, bot: InProcessBot) -> None:
    job = await deliver(world, bot, world.member, 1)
    answer = await admin(world, "quota show", user=world.member.id)
    assert "**100 credits** available, 0 held" in answer.content
    assert f"job `{job.id[:8]}`" in answer.content
    assert "charge" in answer.content and "hold" in answer.content


async def unbounded(world: World, path: str, **options: Any) -> Any:
    """An admin command sent as a client that ignores the registered bounds would send it (2**63, 10**30, 1.5)."""
    inter = await world.fake.slash(world.guild.id, world.channel.id, world.admin.id, f"sora-admin {path}",
                                   options=options, ignore_bounds=True)
    message = await private_reply(inter)
    assert message.allowed_mentions == NO_PINGS and "Traceback" not in message.content
    return message


@pytest.mark.parametrize(("path", "amount"), [("quota set", 2**63), ("quota set", 10**30), ("quota set", -1),
                                              ("quota set", 1.5), ("quota add", 2**63), ("quota add", -(10**30)),
                                              ("quota add", 10_000_001), ("quota add", 2.5)])
async def test_out_of_range_amounts_are_refused_privately_before_any_write(
        world: World, bot: InProcessBot, caplog: pytest.LogCaptureFixture, path: str, amount: object) -> None:
    caplog.set_level(logging.WARNING)
    g, m = world.guild.id, world.member.id
    await admin(world, "quota set", user=m, amount=50)
    before = [dict(r) for r in await bot.db.fetchall("SELECT * FROM ledger ORDER BY id")]

    answer = await unbounded(world, path, user=m, amount=amount)
    assert "whole number of credits from" in answer.content and "10,000,000" in answer.content, answer.content
    assert "Nothing was changed" in answer.content
    assert [dict(r) for r in await bot.db.fetchall("SELECT * FROM ledger ORDER BY id")] == before
    untouched = await bot.db.fetchall("SELECT 1 FROM balances WHERE guild_id = ? AND user_id = ?", (g, world.other.id))
    assert untouched == []
    assert (await bot.db.ledger.balance(g, m)).available == 50

    # The reported corruption: a later ordinary set shows exactly what was set (it showed 1024).
    assert "**1234 credits**" in (await admin(world, "quota set", user=m, amount=1234)).content
    assert (await bot.db.ledger.balance(g, m)).available == 1234
    assert await bot.db.ledger.verify() == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(("path", "options", "expected"), [
    ("config refill", {"amount": 2**63, "period": "daily"}, "refill amount must be"),
    ("config defaults", {"starting_credits": 10**30}, "Starting credits must be"),
    ("config limits", {"daily_budget": 2**63}, "daily budget must be"),
    ("config limits", {"per_member": 10**30}, "Jobs at once per member must be"),
    ("config limits", {"cooldown": 1.5}, "cooldown must be"),
    ("usage", {"days": 10**30}, "from 1 to 365"),
    ("usage", {"days": 0}, "from 1 to 365"),
])
async def test_out_of_range_settings_are_refused_privately(world: World, bot: InProcessBot,
                                                            caplog: pytest.LogCaptureFixture, path: str,
                                                            options: dict[str, Any], expected: str) -> None:
    caplog.set_level(logging.WARNING)
    answer = await unbounded(world, path, **options)
    assert expected in answer.content, answer.content
    assert await bot.db.fetchall("SELECT 1 FROM guild_settings") == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_balance_at_its_cap_refuses_more_in_plain_words(world: World, bot: InProcessBot) -> None:
    from storage.ledger import MAX_BALANCE

    g, m = world.guild.id, world.member.id
    await bot.db.ledger.set_balance(g, m, MAX_BALANCE - 5, None, "test")
    answer = await admin(world, "quota add", user=m, amount=10)
    assert "at most 1,000,000,000" in answer.content and "Nothing was changed" in answer.content
    assert (await bot.db.ledger.balance(g, m)).available == MAX_BALANCE - 5
    assert await bot.db.ledger.verify() == []


# ---- block, unblock --------------------------------------------------------------------------------------------


async def test_block_refuses_generation_and_unblock_restores_it(world: World, bot: InProcessBot) -> None:
    g, m = world.guild.id, world.member.id
    answer = await admin(world, "block", user=m, reason="@everyone spam <@&1> again")
    assert f"<@{m}>" in answer.content and "no longer" in answer.content
    assert await bot.db.guilds.is_blocked(g, m) == "@everyone spam <@&1> again"

    refused = await private_reply(await world.generate())
    assert "blocked" in refused.content
    assert refused.allowed_mentions == NO_PINGS  # the reason is echoed: it must ping nobody
    assert await bot.db.fetchall("SELECT id FROM jobs") == []
    assert (await bot.db.ledger.balance(g, m)).available == 200
    assert world.sim.state.requests_to("/v1/videos/generations") == []

    shown = await admin(world, "quota show", user=m)
    assert "Blocked: @everyone spam" in shown.content

    answer = await admin(world, "unblock", user=m)
    assert "can generate again" in answer.content
    assert await bot.db.guilds.is_blocked(g, m) is None
    accepted = await private_reply(await world.generate())
    assert "held" in accepted.content

    answer = await admin(world, "unblock", user=m)
    assert "wasn't blocked" in answer.content


# ---- refund ----------------------------------------------------------------------------------------------------


@both_backends
async def test_refund_a_delivered_job_once(world: World, bot: InProcessBot) -> None:
    job = await deliver(world, bot, world.member, 1)
    g, m = world.guild.id, world.member.id
    assert (await bot.db.ledger.balance(g, m)).available == 100

    answer = await admin(world, "refund", job=job.id[:8])
    assert "Refunded **100 credits**" in answer.content and f"<@{m}>" in answer.content
    assert (await bot.db.ledger.balance(g, m)).available == 200
    [refund] = [r for r in await ledger_rows(bot, g, m) if r["kind"] == "refund"]
    assert (refund["job_id"], refund["actor_id"], refund["delta_available"]) == (job.id, world.admin.id, 100)

    answer = await admin(world, "refund", job=job.id)
    assert "already refunded" in answer.content
    assert (await bot.db.ledger.balance(g, m)).available == 200
    assert await bot.db.ledger.verify() == []

    answer = await admin(world, "refund", job="deadbeef")
    assert "No job" in answer.content
    answer = await admin(world, "refund", job="not-a-job-id")
    assert "No job" in answer.content


async def test_refund_of_a_running_job_releases_its_hold_and_delivery_charges_nothing(world: World,
                                                                                       bot: InProcessBot) -> None:
    g, m = world.guild.id, world.member.id
    world.sim.state.configure({"processing_seconds": 600})
    await private_reply(await world.generate(duration=4))
    job = await bot.wait_job(lambda j: j.state == "running")
    answer = await admin(world, "refund", job=job.id[:8])
    assert "Refunded **100 credits**" in answer.content
    balance = await bot.db.ledger.balance(g, m)
    assert (balance.available, balance.held) == (200, 0)

    world.sim.state.clock.advance(600)  # the video is ready now
    [finished] = await bot.wait_finished(1)
    assert finished.state == "delivered"
    balance = await bot.db.ledger.balance(g, m)
    assert (balance.available, balance.held) == (200, 0)  # released by the admin: never charged
    assert "already refunded" in (await admin(world, "refund", job=job.id)).content
    assert await bot.db.ledger.verify() == []


# ---- config ----------------------------------------------------------------------------------------------------


async def test_config_show_and_defaults(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    shown = await admin(world, "config show")
    assert "Starting credits for new members: 200" in shown.content
    assert "Default duration: 4 s" in shown.content and "Refill: never" in shown.content

    saved = await admin(world, "config defaults", starting_credits=500, default_duration=8)
    assert "Saved" in saved.content and "Starting credits for new members: 500" in saved.content
    settings = await bot.db.guilds.get(g)
    assert (settings.starting_credits, settings.default_duration) == (500, 8)
    assert (await bot.db.ledger.balance(g, world.other.id)).available == 500  # new to the bot: the new grant

    nothing = await admin(world, "config defaults")
    assert "Nothing to change" in nothing.content

    too_many = await admin(world, "config defaults", starting_credits=5_000_000)  # above what storage allows
    assert "Starting credits must be" in too_many.content and "1,000,000" in too_many.content
    assert await bot.db.guilds.get(g) == settings


async def test_config_refill_shows_in_members_balance(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    saved = await admin(world, "config refill", amount=300, period="weekly")
    assert "top up to 300 weekly" in saved.content
    settings = await bot.db.guilds.get(g)
    assert (settings.refill_amount, settings.refill_period) == (300, "weekly")

    bad = await admin(world, "config refill", amount=2_000_000, period="daily")
    assert "refill amount must be" in bad.content
    assert await bot.db.guilds.get(g) == settings

    balance = await private_reply(await world.fake.slash(g, world.channel.id, world.member.id, "sora balance"))
    assert "**300 credits**" in balance.content
    assert "topped up to 300 credits every week" in balance.content and "Next refill <t:" in balance.content

    await admin(world, "config refill", amount=0, period="never")
    assert (await bot.db.guilds.get(g)).refill_period == "never"


async def test_config_limits(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    saved = await admin(world, "config limits", per_member=1, cooldown=0, daily_budget=1000, server_jobs=3)
    assert "Saved" in saved.content and "Daily budget: 1000 credits/day" in saved.content
    settings = await bot.db.guilds.get(g)
    assert (settings.max_jobs_per_member, settings.cooldown_seconds, settings.daily_budget,
            settings.max_jobs_per_guild) == (1, 0, 1000, 3)

    saved = await admin(world, "config limits", cooldown=15)
    assert (await bot.db.guilds.get(g)).cooldown_seconds == 15
    assert (await bot.db.guilds.get(g)).max_jobs_per_member == 1  # the others untouched

    nothing = await admin(world, "config limits")
    assert "Nothing to change" in nothing.content
    with pytest.raises(InteractionError):  # out of the registered range: Discord itself refuses
        await admin_as(world, "config limits", per_member=0)


async def test_config_channels(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    videos = world.fake.add_channel(g, "videos")
    await world.fake.wait_for(lambda: bot.bot is not None and bot.bot.get_channel(videos.id), recheck=0.05)

    answer = await admin(world, "config channels", action="add", channel=videos.id)
    assert f"<#{videos.id}>" in answer.content
    assert (await bot.db.guilds.get(g)).allowed_channel_ids == (videos.id,)

    refused = await private_reply(await world.generate())  # #general is no longer allowed
    assert "can't be made in this channel" in refused.content and f"<#{videos.id}>" in refused.content
    assert await bot.db.fetchall("SELECT id FROM jobs") == []

    missing = await admin(world, "config channels", action="add")
    assert "Pick a channel" in missing.content
    listed = await admin(world, "config channels", action="list")
    assert f"<#{videos.id}>" in listed.content
    await admin(world, "config channels", action="remove", channel=videos.id)
    assert (await bot.db.guilds.get(g)).allowed_channel_ids == ()
    await admin(world, "config channels", action="add", channel=world.channel.id)
    cleared = await admin(world, "config channels", action="clear")
    assert "every channel" in cleared.content
    assert (await bot.db.guilds.get(g)).allowed_channel_ids == ()


async def test_config_words(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    answer = await admin(world, "config words", action="add", words="@everyone, forbidden phrase, <@&123>")
    assert "(3)" in answer.content and "`@everyone`" in answer.content
    assert (await bot.db.guilds.get(g)).banned_words == ("@everyone", "forbidden phrase", "<@&123>")

    refused = await private_reply(await world.generate(prompt="a Forbidden Phrase in the snow"))
    assert "forbidden" not in refused.content.lower()  # the refusal names none of the words
    assert await bot.db.fetchall("SELECT id FROM jobs") == []

    empty = await admin(world, "config words", action="add", words=" , ")
    assert "Give the words" in empty.content
    too_long = await admin(world, "config words", action="add", words="x" * 150)
    assert "at most 100 characters" in too_long.content
    assert len((await bot.db.guilds.get(g)).banned_words) == 3

    removed = await admin(world, "config words", action="remove", words="FORBIDDEN PHRASE")
    assert "(2)" in removed.content
    cleared = await admin(world, "config words", action="clear")
    assert "(0)" in cleared.content and (await bot.db.guilds.get(g)).banned_words == ()
    shown = await admin(world, "config show")
    assert "Blocked words: 0" in shown.content


# ---- usage, jobs, status ----------------------------------------------------------------------------------------


@both_backends
async def test_usage_with_a_chart(world: World, bot: InProcessBot) -> None:
    empty = await admin(world, "usage")
    assert "Jobs: 0" in empty.content and not empty.attachments

    await deliver(world, bot, world.member, 1)
    await deliver(world, bot, world.other, 2)
    answer = await admin(world, "usage", days=7)
    assert "last 7 days" in answer.content
    assert "Jobs: 2 (2 delivered)" in answer.content
    assert "Credits charged: **200** ($1.00 upstream)" in answer.content
    assert f"<@{world.member.id}> — 100 credits, 1 job\n" in answer.content + "\n"
    [chart] = answer.attachments
    assert chart.filename == "usage.png" and chart.data.startswith(PNG_MAGIC)


async def test_jobs_lists_the_running_ones(world: World, bot: InProcessBot) -> None:
    assert "No jobs" in (await admin(world, "jobs")).content
    world.sim.state.configure({"processing_seconds": 600})  # the job stays running for the whole test
    await private_reply(await world.generate(duration=8))
    job = await bot.wait_job(lambda j: j.state == "running")
    answer = await admin(world, "jobs")
    assert "1 job(s) in progress" in answer.content
    assert f"`{job.id[:8]}` <@{world.member.id}>" in answer.content
    assert "Rendering" in answer.content and "8 s · 16:9 · 200 credits" in answer.content
    status = await admin(world, "status")
    assert "Jobs running in this server: 1." in status.content


@pytest.mark.allow_errors(r"^bot\.jobs\.health: pausing new jobs: misconfigured")  # provoked
async def test_status_reads_the_operators_balance_and_reports_a_refused_key(world: World, bot: InProcessBot) -> None:
    world.sim.state.balance = 123_456
    answer = await admin(world, "status")
    assert "key works" in answer.content and "123456 credits" in answer.content and "$617.28" in answer.content
    assert world.sim.state.requests_to("/v1/credits", "GET")
    assert "Jobs running in this server: 0." in answer.content

    world.sim.state.inject("invalid_api_key", "credits")
    answer = await admin(world, "status")
    assert "API key was refused" in answer.content and "invalid_api_key" in answer.content
    assert "{" not in answer.content  # no raw JSON
    assert "paused" in answer.content


# ---- data deletion ------------------------------------------------------------------------------------------------


@both_backends
async def test_delete_member_and_server(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    await deliver(world, bot, world.member, 1)
    await admin(world, "quota set", user=world.other.id, amount=70)
    await admin(world, "block", user=world.member.id)
    await admin(world, "config defaults", starting_credits=300)

    answer = await admin(world, "data delete-member", user=world.member.id)
    assert "Deleted" in answer.content and "1 jobs" in answer.content
    for table in ("ledger", "jobs", "balances", "blocked_members"):
        rows = await bot.db.fetchall(f"SELECT 1 FROM {table} WHERE guild_id = ? AND user_id = ?", (g, world.member.id))
        assert rows == [], table
    assert (await bot.db.ledger.balance(g, world.other.id)).available == 70  # others untouched
    assert await bot.db.ledger.verify() == []

    kept = await admin(world, "data delete-server", confirm="yes")
    assert "Nothing deleted" in kept.content
    assert (await bot.db.guilds.get(g)).starting_credits == 300

    answer = await admin(world, "data delete-server", confirm="DELETE")
    assert "Deleted this server's data" in answer.content
    for table in ("ledger", "jobs", "balances", "guild_settings"):
        assert await bot.db.fetchall(f"SELECT 1 FROM {table} WHERE guild_id = ?", (g,)) == [], table
    assert (await bot.db.guilds.get(g)).starting_credits == 200  # back to the defaults


# ---- permissions and isolation --------------------------------------------------------------------------------------


async def test_server_side_check_when_admins_override_the_default_permission(world: World, bot: InProcessBot) -> None:
    g = world.guild.id
    attempts = [("quota set", {"user": world.member.id, "amount": 5000}), ("block", {"user": world.other.id}),
                ("config defaults", {"starting_credits": 9999}), ("data delete-server", {"confirm": "DELETE"}),
                ("quota show", {"user": world.other.id}), ("status", {})]
    for path, options in attempts:
        inter = await world.fake.slash(g, world.channel.id, world.member.id, f"sora-admin {path}", options=options,
                                       bypass_permissions=True)
        answer = await private_reply(inter)
        assert "Manage Server" in answer.content, (path, answer.content)
    assert await bot.db.fetchall("SELECT 1 FROM ledger") == []
    assert await bot.db.fetchall("SELECT 1 FROM blocked_members") == []
    assert (await bot.db.guilds.get(g)).starting_credits == 200
    assert world.sim.state.requests_to("/v1/credits") == []


async def test_one_servers_admin_cannot_touch_anothers_data(world: World, bot: InProcessBot) -> None:
    b = await second_server(world, bot)
    a = world.guild.id
    # A job in server B, and one in server A.
    inter = await world.fake.slash(b.guild.id, b.channel.id, b.member.id, "sora generate",
                                   options={"prompt": "a lighthouse", "duration": 4})
    assert "held" in (await private_reply(inter)).content
    job_b = (await bot.wait_finished(1))[0]
    job_a = await deliver(world, bot, world.member, 2)
    assert job_b.guild_id == b.guild.id and job_a.guild_id == a

    # Admin of A sets a quota for someone who is only in B: only A's record changes.
    await admin(world, "quota set", user=b.member.id, amount=1234)
    assert (await bot.db.ledger.balance(a, b.member.id)).available == 1234
    b_rows = await ledger_rows(bot, b.guild.id, b.member.id)
    assert [r["kind"] for r in b_rows] == ["grant", "hold", "charge"]
    shown_in_b = await private_reply(await world.fake.slash(
        b.guild.id, b.channel.id, b.admin.id, "sora-admin quota show", options={"user": b.member.id}))
    assert "**100 credits** available" in shown_in_b.content and "1234" not in shown_in_b.content

    # B's job does not exist in A, neither by prefix nor by full id.
    for ref in (job_b.id[:8], job_b.id):
        answer = await admin(world, "refund", job=ref)
        assert "No job" in answer.content
    assert await bot.db.fetchall("SELECT kind FROM ledger WHERE kind = 'refund'") == []

    # Each server's usage and jobs are its own.
    usage_b = await private_reply(await world.fake.slash(b.guild.id, b.channel.id, b.admin.id, "sora-admin usage"))
    assert "Jobs: 1 (1 delivered)" in usage_b.content and f"<@{world.member.id}>" not in usage_b.content
    usage_a = await admin(world, "usage")
    assert "Jobs: 1 (1 delivered)" in usage_a.content and f"<@{b.member.id}>" not in usage_a.content

    # Deleting server A's data leaves B's alone.
    await admin(world, "data delete-server", confirm="DELETE")
    assert [r["kind"] for r in await ledger_rows(bot, b.guild.id)] == ["grant", "hold", "charge"]
    assert await bot.db.jobs.get(job_b.id) is not None
    assert await bot.db.ledger.verify() == []


async def test_user_text_never_pings(world: World, bot: InProcessBot) -> None:
    """Names and reasons chosen by users reach admin answers; none of them may ping anyone."""
    loud = world.fake.add_user("@everyone")
    world.fake.add_member(world.guild.id, loud.id, permissions=MANAGE_GUILD)
    await admin(world, "quota set", by=loud, user=world.member.id, amount=10)  # reason "set by @everyone"
    await admin(world, "block", user=world.member.id, reason="@here <@&1> spam")
    shown = await admin(world, "quota show", user=world.member.id)
    assert "@everyone" in shown.content and "@here" in shown.content
    words = await admin(world, "config words", action="add", words="@everyone, @here")
    assert "@here" in words.content
    for message in world.fake.channel_messages(world.channel.id):
        assert message.allowed_mentions == NO_PINGS, message.content
