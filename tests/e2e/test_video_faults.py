"""The finished video's link misbehaves or the disk fails: refunded once, in plain words, never charged."""

from __future__ import annotations

import pytest

from tests.e2e.harness import InProcessBot, World, admin_as, assert_friendly, assert_settled, final_status


@pytest.mark.parametrize("kind", ["expired", "wrong_content_type"])
async def test_bad_video_link_is_refunded(world: World, bot: InProcessBot, kind: str) -> None:
    world.sim.state.inject(kind, where="video", count=10)
    await world.generate()
    [job] = await bot.wait_finished(1)
    assert job.state == "failed"
    await assert_settled(bot, world, job)
    status = await final_status(world, job, word="refunded")
    assert_friendly(status.content)
    assert not [m for m in world.fake.channel_messages(world.channel.id) if m.attachments]


async def test_disk_failure_while_downloading_is_refunded(world: World, bot: InProcessBot) -> None:
    assert bot.bot is not None and bot.bot.runner is not None
    video_dir = bot.bot.runner.settings.video_dir
    video_dir.rmdir()  # every write into it now fails, as on a full disk (file modes don't stop root)
    video_dir.write_text("not a directory")
    try:
        await world.generate()
        [job] = await bot.wait_finished(1)
    finally:
        video_dir.unlink()
        video_dir.mkdir()
    assert job.state == "failed"
    assert job.error_code == "disk"  # the job's own failure, not a crash while cleaning up after it
    await assert_settled(bot, world, job)
    assert_friendly(job.error_message)


async def test_admin_zero_and_negative_amounts(world: World, bot: InProcessBot) -> None:
    zero = await admin_as(world, "quota add", user=world.member, amount=0)
    await zero.wait_response(3)
    reply = await zero.wait_followup(1, timeout=10)
    assert "changes nothing" in reply.content
    take = await admin_as(world, "quota add", user=world.member, amount=-1_000_000)
    reply = await take.wait_followup(1, timeout=10)
    assert "0 credits" in reply.content and "never goes below 0" in reply.content
    balance = await bot.db.ledger.balance(world.guild.id, world.member.id)
    assert balance.available == 0
    assert await bot.db.ledger.verify() == []
