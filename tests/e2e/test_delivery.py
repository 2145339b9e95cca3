"""Delivery: the interaction token dying mid-job (the bot then posts as itself and never calls the dead webhook),
a forbidden or deleted channel (followup, DM, or refund), videos over the upload limit (re-encoded to fit, else a
link with its expiry), Discord's 413, the status message's life, and mentions that ping only the requester."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from bot.discord_app.notifier import TOKEN_MARGIN
from bot.jobs import runner as runner_module
from bot.jobs.throttle import StatusThrottle
from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    assert_friendly,
    assert_settled,
    final_status,
    long_job,
    running_bot,
    uploads,
    video_posts,
)
from tests.e2e.harness import finish_render as finish
from tests.helpers import LIVE_MENTION

CHANNEL_POST = "/channels/{channel_id}/messages"
WEBHOOK_POST = "/webhooks/{application_id}/{token}"
#: Left on the token when the job starts: well above the bot's margin, so at first the bot trusts it.
SECONDS_LEFT = 100.0


async def old_token_generate(world: World, seconds_left: float = SECONDS_LEFT) -> Any:
    """/sora generate whose interaction was issued almost 15 minutes ago: its token is alive (and trusted) when
    the job starts; `outlive_the_token` then moves Discord's clock (the bot's too) past its end mid-job."""
    issued = world.fake.clock.now() - world.fake.interaction_token_lifetime + seconds_left
    return await world.fake.slash(world.guild.id, world.channel.id, world.member.id, "sora generate",
                                  options={"prompt": "a slow sunrise"}, issued_at=issued)


def outlive_the_token(world: World) -> int:
    """Move Discord's clock past the token's end; returns how many requests were made before (to look after)."""
    world.fake.clock.advance(SECONDS_LEFT + 20)
    return len(world.fake.requests)


# ---- the interaction token ----------------------------------------------------------------------------------------

async def test_token_expired_mid_job_posts_through_the_channel_without_touching_the_webhook(
        world: World, bot: InProcessBot) -> None:
    """The switch happens mid-job: the token was alive and used when the job started (the private "held"
    answer went through it, and the bot's own judgement, with its margin, trusted it); Discord's clock then
    passes its end, and the delivery goes to the channel without one more call on the dead webhook."""
    world.sim.state.configure({"processing_seconds": 1000})
    inter = await old_token_generate(world)
    job = await long_job(bot, inter)
    assert job.interaction_usable(world.fake.clock.now(), TOKEN_MARGIN)  # trusted at the start
    assert [r.status for r in world.fake.requests if r.route.startswith("/webhooks/")] == [200]  # "held", by token
    before = outlive_the_token(world)  # now dead on Discord's side, and by the bot's clock
    job = await finish(world, bot)
    assert job.state == "delivered", job.error_message
    assert uploads(world) == [CHANNEL_POST]
    assert inter.rejected_callbacks == []  # no 50027: the bot knew the token was dead and did not try it
    assert [r.path for r in world.fake.requests[before:] if r.route.startswith("/webhooks/")] == []
    [post] = video_posts(world, job.id)
    assert post.allowed_mentions["parse"] == [] and [int(u) for u in post.allowed_mentions["users"]] == [
        world.member.id]
    await assert_settled(bot, world, job)


async def test_channel_forbidden_while_the_token_lives_delivers_by_followup(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    await long_job(bot, await world.generate())
    world.fake.forbid(world.channel.id, {"send_messages", "attach_files"})
    job = await finish(world, bot)
    assert job.state == "delivered", job.error_message
    assert uploads(world) == [WEBHOOK_POST]
    await assert_settled(bot, world, job)


async def test_channel_forbidden_after_the_token_died_delivers_by_dm(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    inter = await old_token_generate(world)
    await long_job(bot, inter)
    outlive_the_token(world)
    world.fake.forbid(world.channel.id, {"send_messages", "attach_files"})
    job = await finish(world, bot)
    assert job.state == "delivered", job.error_message
    assert [m for m in world.fake.dm_messages(world.member.id) if m.attachments]
    assert inter.rejected_callbacks == []
    await assert_settled(bot, world, job)


async def test_channel_deleted_and_dms_closed_is_undeliverable_and_refunded(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    inter = await old_token_generate(world)
    await long_job(bot, inter)
    outlive_the_token(world)
    world.fake.delete_channel(world.channel.id)
    world.fake.block_dms(world.member.id)
    job = await finish(world, bot)
    assert job.state == "failed" and job.error_code == "undeliverable"
    assert_friendly(job.error_message)
    assert video_posts(world, job.id) == []
    assert inter.rejected_callbacks == []
    await assert_settled(bot, world, job)


# ---- size ---------------------------------------------------------------------------------------------------------

async def test_oversize_video_is_reencoded_to_fit_the_stated_limit(world: World, bot: InProcessBot) -> None:
    limit = 300_000
    world.fake.set_filesize_limit(world.guild.id, limit)
    world.sim.state.configure({"video_bytes": 2_000_000})
    await accepted(await world.generate())
    [job] = await bot.wait_finished(1, timeout=60)
    assert job.state == "delivered", job.error_message
    [post] = video_posts(world, job.id)
    [video] = post.attachments
    assert 0 < video.size <= limit
    assert video.data[4:8] == b"ftyp"  # still an MP4
    assert "link" not in post.content
    await assert_settled(bot, world, job)


async def test_video_that_cannot_fit_is_posted_as_a_link_with_its_expiry(world: World, bot: InProcessBot) -> None:
    world.fake.set_filesize_limit(world.guild.id, 20_000)  # no watchable 4 s encode is this small
    world.sim.state.configure({"video_bytes": 2_000_000})
    await accepted(await world.generate())
    [job] = await bot.wait_finished(1, timeout=60)
    assert job.state == "delivered", job.error_message
    assert video_posts(world, job.id) == []
    posts = [m for msgs in world.fake.messages.values() for m in msgs if job.result_url and job.result_url in m.content]
    assert len(posts) == 1
    assert re.search(r"expires <t:\d+:R>", posts[0].content), posts[0].content
    assert [int(u) for u in posts[0].allowed_mentions["users"]] == [world.member.id]
    await assert_settled(bot, world, job)


async def test_discord_413_is_handled_by_reencoding(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    await long_job(bot, await world.generate())
    world.fake.fail_next("POST", r"/webhooks/\d+/", status=413, code=40005)
    job = await finish(world, bot)
    assert job.state == "delivered", job.error_message
    assert any(r.status == 413 for r in world.fake.requests)
    assert len(video_posts(world, job.id)) == 1
    await assert_settled(bot, world, job)


# ---- status message and mentions ----------------------------------------------------------------------------------

@pytest.fixture
def eager_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress edits at once instead of every 10 s (the time scale does not reach the throttle)."""
    monkeypatch.setattr(runner_module, "StatusThrottle", functools.partial(StatusThrottle, min_interval=0.0))


async def test_status_message_shows_progress_then_done(world: World, eager_status: None, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    job = await long_job(bot, await world.generate())
    world.sim.state.clock.advance(500)  # half rendered
    await world.fake.wait_for(lambda: "█" in (world.fake.message(job.status_message_id or 0).content or ""),
                              timeout=10, what="a progress bar")
    job = await finish(world, bot)
    status = await final_status(world, job)
    contents = [h["content"] for h in status.history] + [status.content]
    assert any(re.search(r"`[█░]+` \d+%", c) for c in contents), contents
    assert "Done" in status.content and "100 credits charged" in status.content
    assert all(h["allowed_mentions"] in (None, {"parse": []}) for h in status.history)
    assert len(world.fake.channel_messages(world.channel.id, include_ephemeral=False)) == 2  # status + video


async def test_mentions_in_a_prompt_ping_nobody_and_delivery_pings_only_the_requester(world: World,
                                                                                      bot: InProcessBot) -> None:
    role = world.fake.add_role(world.guild.id, "mods")
    prompt = f"hey @everyone and @here, <@{world.other.id}> <@!{world.other.id}> <@&{role.id}> look"
    await accepted(await world.generate(prompt=prompt))
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    status = await final_status(world, job)
    # Who Discord would notify, computed by the local Discord from content + allowed_mentions for the request
    # that created each message and for every edit: the status message nobody, ever; the delivery the requester.
    assert len(status.pings) == status.edit_count + 1 >= 3  # created, then edited at least twice
    assert [bool(p) for p in status.pings] == [False] * len(status.pings), status.pings
    assert status.history[0]["allowed_mentions"] == {"parse": []}  # on the create too, not only the last edit
    [post] = video_posts(world, job.id)
    assert [set(p.users) for p in post.pings] == [{world.member.id}] * len(post.pings)
    assert not any(p.roles or p.everyone for p in post.pings)
    assert LIVE_MENTION.findall(post.content) == [f"<@{world.member.id}>"]
    assert world.sim.state.requests_to("/v1/videos/generations", "POST")[0].json["input"]["prompt"] == prompt
    await assert_settled(bot, world, job)


# ---- Discord's 2,000 characters -----------------------------------------------------------------------------------

@pytest.mark.allow_errors(r"^aiohttp\.server: Error handling request")  # the too-big download the bot cut off
async def test_link_fallback_with_a_5000_character_prompt_and_a_long_signed_link_fits_and_is_delivered(
        world: World) -> None:
    """The worst case for length: a 5,000-character prompt of markdown and mentions (escaping doubles it) and a
    ~1,450-character link (the simulator serves it: its dot segments fold away when fetched, the way a long
    presigned URL still points at one file). Every message fits Discord's 2,000 characters (the local Discord
    refuses more with 50035), the link and the requester's mention are whole, and nobody else is pinged."""
    world.extra_env["MAX_VIDEO_MB"] = "1"  # the 2 MB video is too big to fetch: a link (set before the bot starts)
    async with running_bot(world) as bot:
        await _link_fallback_with_the_longest_texts(world, bot)


async def _link_fallback_with_the_longest_texts(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"video_bytes": 2_000_000,
                               "public_url": f"{world.sim.base_url}/X-Amz-Signature-{'ab' * 650}/.."})
    role = world.fake.add_role(world.guild.id, "mods")
    unit = f"**@everyone** __<@{world.other.id}>__ `@here` ~~<@&{role.id}>~~ ||> # [x](y) - \\_|| "
    prompt = (unit * (5000 // len(unit) + 1))[:5000].strip()
    await accepted(await world.generate(prompt=prompt))
    [job] = await bot.wait_finished(1, timeout=60)
    assert job.state == "delivered", (job.error_code, job.error_message)
    assert job.result_url is not None and len(job.result_url) > 1400
    [post] = [m for msgs in world.fake.messages.values() for m in msgs if job.result_url in m.content]
    assert len(post.content) <= 2000
    assert job.result_url in post.content.split()
    assert LIVE_MENTION.findall(post.content) == [f"<@{world.member.id}>"]
    assert [int(u) for u in post.allowed_mentions["users"]] == [world.member.id]
    refused = [r for r in world.fake.requests if r.error_code == 50035]
    assert refused == [], [r.path for r in refused]
    status = await final_status(world, job)
    assert len(status.content) <= 2000 and not LIVE_MENTION.search(status.content.replace(f"<@{world.member.id}>", ""))
    await assert_settled(bot, world, job)
