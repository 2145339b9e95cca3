"""`/sora-admin data delete-member` and `delete-server` while the member's (or the server's) jobs are still in
progress: the jobs are stopped and ended first, so nothing is posted, charged or granted afterwards, nothing of
theirs is written again, and nothing crashes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.harness import MANAGE_GUILD, InProcessBot, World, admin_as, private_reply, video_posts

PROCESSING = 600  # simulated seconds: the member's job stays "running" upstream until the test moves the clock


async def second_server(world: World, bot: InProcessBot) -> tuple[Any, Any, Any]:
    """Another server with a member: its job, delivered after the erasure, shows the bot kept working."""
    fake = world.fake
    guild = fake.add_guild("Elsewhere")
    channel = fake.add_channel(guild.id, "videos")
    member = fake.add_user("bystander")
    fake.add_member(guild.id, member.id)
    owner = fake.add_user("owner-b")
    fake.add_member(guild.id, owner.id, permissions=MANAGE_GUILD)
    await fake.wait_for(lambda: bot.bot is not None and bot.bot.get_guild(guild.id) is not None, recheck=0.05,
                        what="bot sees the second server")
    return guild, channel, member


async def start_jobs(world: World, bot: InProcessBot) -> tuple[Any, Any]:
    """The member's two jobs: one running upstream (a long task), one queued behind it (one slot here)."""
    await private_reply(await admin_as(world, "config limits", cooldown=0, server_jobs=1))
    world.sim.state.configure({"processing_seconds": PROCESSING})
    assert "held" in (await private_reply(await world.generate(duration=4))).content
    running = await bot.wait_job(lambda j: j.state == "running" and j.status_message_id is not None)
    assert "held" in (await private_reply(await world.generate(duration=4))).content
    queued = await bot.wait_job(lambda j: j.state == "queued" and j.status_message_id is not None)
    return running, queued


async def prove_the_bot_moved_on(world: World, bot: InProcessBot, guild: Any, channel: Any, member: Any) -> None:
    """Let the erased task finish upstream, then run another server's job to delivery: by then a job still
    driven would have polled, downloaded and posted."""
    world.sim.state.configure({"processing_seconds": 0.3})
    world.sim.state.clock.advance(PROCESSING + 60)
    inter = await world.fake.slash(guild.id, channel.id, member.id, "sora generate",
                                   options={"prompt": "a lighthouse at dusk", "duration": 4})
    assert "held" in (await private_reply(inter)).content
    job = await bot.wait_job(lambda j: j.guild_id == guild.id and j.state in ("delivered", "failed"), timeout=30)
    assert job.state == "delivered", job.error_message


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors logged by the bot (or asyncio about its tasks). The simulator's own web server (aiohttp.server)
    complains when the bot hangs up on a download it no longer wants; that is the test's stand-in, not the bot."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR and r.name != "aiohttp.server"]


@pytest.mark.parametrize("scope", ["member", "server"])
async def test_erasing_while_jobs_run_stops_them_and_writes_nothing_afterwards(
        world: World, bot: InProcessBot, caplog: pytest.LogCaptureFixture, scope: str) -> None:
    caplog.set_level(logging.INFO)
    g, m = world.guild.id, world.member.id
    guild_b, channel_b, member_b = await second_server(world, bot)
    running, queued = await start_jobs(world, bot)
    polls_before = len(world.sim.state.requests_to(f"/v1/tasks/{running.task_id}"))
    creates_before = len(world.sim.state.requests_to("/v1/videos/generations"))

    if scope == "member":
        answer = await private_reply(await admin_as(world, "data delete-member", user=m))
    else:
        answer = await private_reply(await admin_as(world, "data delete-server", confirm="DELETE"))
    assert "2 unfinished jobs stopped and not charged" in answer.content, answer.content
    polls_at_erase = len(world.sim.state.requests_to(f"/v1/tasks/{running.task_id}"))
    assert polls_at_erase >= polls_before

    await prove_the_bot_moved_on(world, bot, guild_b, channel_b, member_b)

    # No video posted, no status read or create sent for the erased jobs after the erasure.
    assert video_posts(world, running.id) == [] and video_posts(world, queued.id) == []
    assert len(world.sim.state.requests_to(f"/v1/tasks/{running.task_id}")) == polls_at_erase
    assert len(world.sim.state.requests_to("/v1/videos/generations")) == creates_before + 1  # the other server's
    # Nothing re-created: no ledger entry, balance, job or (for the server) settings row.
    scope_sql, params = ("guild_id = ? AND user_id = ?", (g, m)) if scope == "member" else ("guild_id = ?", (g,))
    for table in ("ledger", "jobs", "balances", "refill_periods"):
        assert await bot.db.fetchall(f"SELECT * FROM {table} WHERE {scope_sql}", params) == [], table
    if scope == "server":
        assert await bot.db.fetchall("SELECT * FROM guild_settings WHERE guild_id = ?", (g,)) == []
    # Their public status messages no longer say "rendering" or show the prompt and the Cancel button.
    for job in (running, queued):
        status = world.fake.message(job.status_message_id or 0)
        assert status is not None and "stopped" in status.content and status.components == []
        assert "red fox" not in status.content and not status.embeds
    assert await bot.db.ledger.verify() == []
    assert errors(caplog) == []


async def test_erasing_a_member_leaves_the_others_jobs_running(world: World, bot: InProcessBot) -> None:
    await private_reply(await admin_as(world, "config limits", cooldown=0))
    world.sim.state.configure({"processing_seconds": PROCESSING})
    await private_reply(await world.generate(duration=4))
    mine = await bot.wait_job(lambda j: j.state == "running" and j.user_id == world.member.id)
    await private_reply(await world.generate(user=world.other, duration=4))
    theirs = await bot.wait_job(lambda j: j.state == "running" and j.user_id == world.other.id)

    answer = await private_reply(await admin_as(world, "data delete-member", user=world.member.id))
    assert "1 unfinished job stopped" in answer.content
    assert await bot.db.jobs.get(mine.id) is None

    world.sim.state.clock.advance(PROCESSING + 60)
    finished = await bot.wait_job(lambda j: j.id == theirs.id and j.state in ("delivered", "failed"), timeout=30)
    assert finished.state == "delivered"
    assert len(video_posts(world, theirs.id)) == 1 and video_posts(world, mine.id) == []
    balance = await bot.db.ledger.balance(world.guild.id, world.other.id)
    assert (balance.available, balance.held) == (100, 0)
    assert await bot.db.ledger.verify() == []


@pytest.mark.allow_errors(r"^aiohttp\.server: Error handling request")  # the download the erasure cut off
async def test_erasing_while_the_video_downloads_posts_nothing_and_grants_nothing(
        world: World, bot: InProcessBot, caplog: pytest.LogCaptureFixture) -> None:
    """The job is past the upstream (completed) and fetching its video when its member's data goes: the video
    is never posted for free, and the member's balance is not re-created (with fresh starting credits)."""
    caplog.set_level(logging.INFO)
    g, m = world.guild.id, world.member.id
    guild_b, channel_b, member_b = await second_server(world, bot)
    # The video downloads answer after 3 s: this job's, then (started later, so it ends later) the other server's.
    world.sim.state.inject("slow", "video", count=2, retry_after=3.0)
    assert "held" in (await private_reply(await world.generate(duration=4))).content
    job = await bot.wait_job(lambda j: j.state == "completed")
    await world.fake.wait_for(lambda: world.sim.state.requests_to("/files/"), recheck=0.02,
                              what="the video download started")

    answer = await private_reply(await admin_as(world, "data delete-member", user=m))
    assert "1 unfinished job stopped" in answer.content

    await prove_the_bot_moved_on(world, bot, guild_b, channel_b, member_b)
    assert video_posts(world, job.id) == []
    for table in ("ledger", "jobs", "balances"):
        rows = await bot.db.fetchall(f"SELECT * FROM {table} WHERE guild_id = ? AND user_id = ?", (g, m))
        assert rows == [], table
    assert await bot.db.ledger.verify() == []
    assert errors(caplog) == []
