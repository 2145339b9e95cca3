"""The buttons on the bot's messages (issue 15, items 2-4 and the abuse cases), through the local Discord:
Cancel on a queued job's status message, Edit and Extend on a delivered video, and their confirmations.
After each, the ledger is verified: nothing charged twice, nothing lost."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord_app.items import button_id
from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    admin_as,
    assert_friendly,
    ledger_kinds,
    private_reply,
    status_message,
    video_posts,
)

CREATES = "/v1/videos/generations"


def custom_ids(message: Any) -> list[str]:
    return [c["custom_id"] for row in message.components or [] for c in row.get("components", []) if "custom_id" in c]


async def queued_behind(world: World, bot: InProcessBot, user: Any = None, prompt: str = "waiting in line") -> Any:
    """One slot in the server, taken by `world.other`'s long job; `user`'s job waits behind it. Returns the
    waiting job once its status message shows the Cancel button."""
    await bot.db.guilds.update(world.guild.id, max_jobs_per_guild=1, cooldown_seconds=0)
    world.sim.state.configure({"processing_seconds": 1000})
    if not await bot.db.fetchall("SELECT id FROM jobs WHERE state = 'running'"):
        await accepted(await world.generate(user=world.other, prompt="holding the slot"))
        await bot.wait_job(lambda j: j.state == "running")
    await accepted(await world.generate(user=user or world.member, prompt=prompt))
    job = await bot.wait_job(lambda j: j.prompt == prompt and j.status_message_id is not None)
    assert job.state == "queued"
    await world.fake.wait_for(lambda: button_id("cancel", job.id) in custom_ids(status_message(world, job)),
                              what="a Cancel button on the queued job's status")
    return job


async def press(world: World, job: Any, user: Any, action: str = "cancel") -> Any:
    message = status_message(world, job) if action == "cancel" else video_posts(world, job.id)[-1]
    return await world.fake.press_button(message, button_id(action, job.id), user.id)  # type: ignore[arg-type]


async def private_followup(inter: Any) -> Any:
    """The private answer that follows a press acknowledged silently (type 6)."""
    assert (await inter.wait_response(3)).type == 6
    message = await inter.wait_followup(1, timeout=10)
    assert message.ephemeral, message.content
    return message


async def balance_of(bot: InProcessBot, world: World, user: Any) -> tuple[int, int]:
    balance = await bot.db.ledger.balance(world.guild.id, user.id)
    return balance.available, balance.held


# ---- Cancel ---------------------------------------------------------------------------------------------------

async def test_the_requester_cancels_a_queued_job_at_once(world: World, bot: InProcessBot) -> None:
    job = await queued_behind(world, bot)
    third = world.fake.add_user("third")
    world.fake.add_member(world.guild.id, third.id)
    later = await queued_behind(world, bot, user=third, prompt="behind the cancelled one")
    assert await balance_of(bot, world, world.member) == (100, 100)

    answer = await private_followup(await press(world, job, world.member))
    assert "Cancelled" in answer.content and "100 credits" in answer.content and "you have 200" in answer.content
    status = status_message(world, job)
    assert "Cancelled by its requester" in status.content and status.components == [], status.content
    ended = await bot.db.jobs.get(job.id)
    assert ended is not None and (ended.state, ended.error_code) == ("failed", "cancelled")
    assert await ledger_kinds(bot, job.id) == ["hold", "release"]
    assert await balance_of(bot, world, world.member) == (200, 0)
    assert bot.bot is not None and bot.bot.runner is not None
    assert bot.bot.runner.slots.position(job.id) is None and bot.bot.runner.slots.position(later.id) == 1
    assert await bot.db.ledger.verify() == []

    world.sim.state.configure({"processing_seconds": 0.2})
    world.sim.state.clock.advance(1000)  # the slot frees: the job behind starts, and its Cancel goes away
    done = await bot.wait_finished(3)
    assert sorted(j.state for j in done) == ["delivered", "delivered", "failed"]
    prompts = [c.json["input"]["prompt"] for c in world.sim.state.requests_to(CREATES, "POST")]
    assert prompts == ["holding the slot", "behind the cancelled one"]  # never a create for the cancelled job
    assert custom_ids(status_message(world, later)) == []
    assert await ledger_kinds(bot, later.id) == ["hold", "charge"]
    assert await bot.db.ledger.verify() == []


async def test_only_the_requester_or_an_admin_may_cancel(world: World, bot: InProcessBot) -> None:
    job = await queued_behind(world, bot)
    refusal = await private_reply(await press(world, job, world.other))
    assert "Only the member who asked" in refusal.content
    assert (await bot.db.jobs.get(job.id)).state == "queued"  # type: ignore[union-attr]
    assert await ledger_kinds(bot, job.id) == ["hold"]

    answer = await private_followup(await press(world, job, world.admin))
    assert f"<@{world.member.id}>" in answer.content and "went back to them" in answer.content
    assert "Cancelled by a server admin" in status_message(world, job).content
    assert await ledger_kinds(bot, job.id) == ["hold", "release"]
    assert await balance_of(bot, world, world.member) == (200, 0)
    assert await bot.db.ledger.verify() == []


async def test_cancel_pressed_twice_releases_once(world: World, bot: InProcessBot) -> None:
    job = await queued_behind(world, bot)
    first, second = await asyncio.gather(press(world, job, world.member), press(world, job, world.member))
    answers = sorted([(await private_followup(first)).content, (await private_followup(second)).content])
    assert sum("Cancelled." in a for a in answers) == 1 and sum("already cancelled" in a for a in answers) == 1
    assert await ledger_kinds(bot, job.id) == ["hold", "release"]
    assert await balance_of(bot, world, world.member) == (200, 0)
    assert await bot.db.ledger.verify() == []


async def test_cancel_racing_the_submission_cancels_or_is_too_late_never_both(world: World,
                                                                              bot: InProcessBot) -> None:
    job = await queued_behind(world, bot)
    world.sim.state.configure({"processing_seconds": 0.2})
    world.sim.state.clock.advance(1000)  # the running job ends: the queued one gets the slot now
    inter = await press(world, job, world.member)  # ... while the member presses Cancel
    answer = await private_followup(inter)
    done = await bot.wait_finished(2)
    ended = next(j for j in done if j.id == job.id)
    creates = [c.json["input"]["prompt"] for c in world.sim.state.requests_to(CREATES, "POST")]
    if "Cancelled." in answer.content:
        assert ended.state == "failed" and "waiting in line" not in creates
        assert await ledger_kinds(bot, job.id) == ["hold", "release"]
    else:
        assert "Too late to cancel" in answer.content or "already done" in answer.content, answer.content
        assert ended.state == "delivered" and creates.count("waiting in line") == 1
        assert await ledger_kinds(bot, job.id) == ["hold", "charge"]
    assert await bot.db.ledger.verify() == []


async def test_cancel_on_a_status_message_from_before_a_restart(world: World) -> None:
    first = InProcessBot(world)
    await first.start()
    try:
        job = await queued_behind(world, first)
    finally:
        await first.stop()
    second = InProcessBot(world)
    await second.start()
    try:
        answer = await private_followup(await press(world, job, world.member))
        assert "Cancelled." in answer.content, answer.content
        assert await ledger_kinds(second, job.id) == ["hold", "release"]
        assert await balance_of(second, world, world.member) == (200, 0)
        assert await second.db.ledger.verify() == []
    finally:
        await second.stop()


async def test_cancel_of_an_erased_or_admin_refunded_job(world: World, bot: InProcessBot) -> None:
    job = await queued_behind(world, bot)
    refund = await private_reply(await admin_as(world, "refund", job=job.id[:8]))
    assert "Refunded" in refund.content
    answer = await private_followup(await press(world, job, world.member))  # still queued: it ends now
    assert "Cancelled." in answer.content
    assert await ledger_kinds(bot, job.id) == ["hold", "release"]  # the admin's release, not a second one
    assert await balance_of(bot, world, world.member) == (200, 0)

    gone = await queued_behind(world, bot, prompt="erased while waiting")
    assert bot.bot is not None and bot.bot.runner is not None
    await bot.bot.runner.abort(gone.id)
    await bot.db.reports.erase(world.guild.id, world.member.id)  # its status message still shows Cancel
    text = (await private_reply(await press(world, gone, world.member))).content
    assert "no longer known" in text and "Nothing was charged" in text
    assert_friendly(text)
    assert await bot.db.ledger.verify() == []
