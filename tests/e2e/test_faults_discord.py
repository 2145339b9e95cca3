"""Discord misbehaving while a job runs: rate limits, server errors, lost permissions, a deleted channel, a
dropped gateway, and 50 members at once. Whatever happens, the job ends delivered and charged once, or
failed and refunded once, and the ledger verifies."""

from __future__ import annotations

import asyncio
from typing import Any

from storage.models import Job
from tests.e2e.harness import InProcessBot, World, video_posts

EPHEMERAL = 64


async def start_long_job(world: World, bot: InProcessBot, user: Any = None) -> Job:
    """A job whose render waits for `finish_render`, so faults can be armed while it runs."""
    world.sim.state.configure({"processing_seconds": 1000})
    inter = await world.generate(user=user)
    assert (await inter.wait_response(3)).type == 5
    answer = await inter.wait_original(lambda m: not m.loading, timeout=10)
    assert "held" in answer.content, answer.content
    return await bot.wait_job(lambda j: j.state == "running")


async def finish(world: World, bot: InProcessBot, job: Job) -> Job:
    world.sim.state.clock.advance(1000)
    [done] = await bot.wait_finished(1)
    assert done.id == job.id
    assert await bot.db.ledger.verify() == []
    return done


def where_posted(world: World, job: Job) -> list[int]:
    """The channels (DMs included) holding this job's video."""
    ids = {id(m) for m in video_posts(world, job.id)}
    return [cid for cid, messages in world.fake.messages.items() for m in messages if id(m) in ids]


async def assert_charged_once(bot: InProcessBot, world: World, job: Job, user: Any = None) -> None:
    user = user or world.member
    kinds = [r["kind"] for r in await bot.db.fetchall("SELECT kind FROM ledger WHERE job_id = ?", (job.id,))]
    balance = await bot.db.ledger.balance(world.guild.id, user.id)
    if job.state == "delivered":
        assert kinds == ["hold", "charge"]
        assert (balance.available, balance.held) == (100, 0)
    else:
        assert kinds == ["hold", "release"]
        assert (balance.available, balance.held) == (200, 0)


async def test_429_on_message_routes_still_delivers(world: World, bot: InProcessBot) -> None:
    job = await start_long_job(world, bot)
    channel_rule = world.fake.rate_limit(f"/channels/{world.channel.id}/messages", count=4, retry_after=0.05)
    hook_rule = world.fake.rate_limit("/webhooks/", count=2, retry_after=0.05, method="POST")
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    assert hook_rule.hits == 2 and channel_rule.hits >= 1  # status edits and the followup met the 429s
    assert len(video_posts(world, job.id)) == 1
    await assert_charged_once(bot, world, job)


def delivered_by(world: World) -> list[str]:
    """Route templates of the successful uploads (the video) the bot made."""
    return [r.route for r in world.fake.requests if r.method == "POST" and r.files and r.status < 300]


def followup_refused(world: World, times: int = 1) -> None:
    """The interaction's followup webhook answers 404 10015 (not retried, unlike a 5xx on a webhook)."""
    world.fake.fail_next("POST", r"/webhooks/\d+/", status=404, code=10015, times=times)


async def test_5xx_on_followup_is_retried_and_delivered_once(world: World, bot: InProcessBot) -> None:
    job = await start_long_job(world, bot)
    world.fake.fail_next("POST", r"/webhooks/\d+/", status=503)
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    assert delivered_by(world) == ["/webhooks/{application_id}/{token}"]
    assert len(video_posts(world, job.id)) == 1
    await assert_charged_once(bot, world, job)


async def test_followup_refused_falls_back_to_the_channel(world: World, bot: InProcessBot) -> None:
    job = await start_long_job(world, bot)
    followup_refused(world)
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    assert delivered_by(world) == ["/channels/{channel_id}/messages"]
    assert where_posted(world, job) == [world.channel.id]
    await assert_charged_once(bot, world, job)


async def test_5xx_on_channel_post_falls_back_to_a_dm(world: World, bot: InProcessBot) -> None:
    job = await start_long_job(world, bot)
    followup_refused(world)
    world.fake.fail_next("POST", rf"/channels/{world.channel.id}/messages$", status=503)
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    [posted] = where_posted(world, job)
    assert posted != world.channel.id and world.fake.dm_messages(world.member.id)
    await assert_charged_once(bot, world, job)


async def test_403_missing_permissions_then_dm(world: World, bot: InProcessBot) -> None:
    """The bot loses Send Messages mid-job and the followup fails: the member gets a DM. The gateway told
    discord.py's cache about the lost permission, so the channel is not even asked (no 403 50013)."""
    job = await start_long_job(world, bot)
    world.fake.forbid(world.channel.id, {"send_messages", "attach_files"})
    followup_refused(world)
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    forbidden = world.fake.requests_to("POST", "/channels/{channel_id}/messages")
    assert not any(r.status == 403 for r in forbidden if r.path == f"/channels/{world.channel.id}/messages")
    [posted] = where_posted(world, job)
    assert posted != world.channel.id and world.fake.dm_messages(world.member.id)
    await assert_charged_once(bot, world, job)


async def test_nowhere_to_post_refunds_once(world: World, bot: InProcessBot) -> None:
    """No followup, no channel (50013), DMs closed (50007): failed and refunded, once."""
    job = await start_long_job(world, bot)
    world.fake.forbid(world.channel.id, {"send_messages", "attach_files"})
    world.fake.block_dms(world.member.id)
    followup_refused(world, times=10)
    job = await finish(world, bot, job)
    assert job.state == "failed" and job.error_code == "undeliverable"
    assert video_posts(world, job.id) == []
    await assert_charged_once(bot, world, job)


async def test_channel_deleted_mid_job(world: World, bot: InProcessBot) -> None:
    """404 10003 on the channel (and no followup): the video reaches the member by DM, charged once."""
    job = await start_long_job(world, bot)
    world.fake.delete_channel(world.channel.id)
    followup_refused(world)
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    gone = [r for r in world.fake.requests if r.path.startswith(f"/channels/{world.channel.id}/")]
    assert [r.error_code for r in gone if r.status == 404] == [10003]  # asked once, then never again
    [posted] = where_posted(world, job)
    assert posted != world.channel.id and len(video_posts(world, job.id)) == 1
    await assert_charged_once(bot, world, job)


async def test_gateway_dropped_mid_job_resumes_and_delivers(world: World, bot: InProcessBot) -> None:
    job = await start_long_job(world, bot)
    identifies = world.fake.identify_count
    await world.fake.drop_gateway()
    await world.fake.wait_for(lambda: any(e.op == 6 for e in world.fake.gateway.log), timeout=20,
                              what="discord.py sent RESUME")
    job = await finish(world, bot, job)
    assert job.state == "delivered", job.error_message
    assert world.fake.identify_count == identifies  # resumed, not a new session
    assert len(video_posts(world, job.id)) == 1
    await assert_charged_once(bot, world, job)
    # and the bot still answers commands after the resume (to the end: a command cut off by the test's end
    # would crash on the closed database, which the harness now reports)
    inter = await world.generate(user=world.other)
    assert (await inter.wait_response(3)).type == 5
    answer = await inter.wait_original(lambda m: not m.loading, timeout=10)
    assert "held" in answer.content, answer.content


async def test_50_concurrent_interactions_are_all_acknowledged_in_time(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    users = []
    for n in range(50):
        user = world.fake.add_user(f"crowd{n}")
        world.fake.add_member(world.guild.id, user.id)
        users.append(user)
    interactions = await asyncio.gather(*(world.generate(user=u) for u in users))
    responses = await asyncio.gather(*(i.wait_response(3) for i in interactions))
    assert all(r.type == 5 and r.data["flags"] & EPHEMERAL for r in responses)
    # The local Discord refuses a callback later than 3 s (10062), as Discord does: none was refused.
    assert not any(i.rejected_callbacks for i in interactions)
    latencies = sorted(i.response_latency for i in interactions)  # a figure for the report, not a bound
    answers = await asyncio.gather(*(i.wait_original(lambda m: not m.loading, timeout=20) for i in interactions))
    assert all("held" in a.content for a in answers)
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == 50
    assert await bot.db.ledger.verify() == []
    print(f"FAULT-FIGURES 50 interactions: slowest ack {latencies[-1]:.3f} s, median {latencies[25]:.3f} s")
