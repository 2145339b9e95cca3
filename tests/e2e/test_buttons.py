"""The buttons on the bot's messages (issue 15, items 2-4 and the abuse cases), through the local Discord:
Cancel on a queued job's status message, Edit and Extend on a delivered video, and their confirmations.
After each, the ledger is verified: nothing charged twice, nothing lost."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from PIL import Image

from bot.discord_app.items import button_id
from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    admin_as,
    assert_friendly,
    ledger_kinds,
    png,
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


# ---- Edit and Extend ------------------------------------------------------------------------------------------

def form_fields(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The form's inputs by custom id (each inside its label)."""
    return {comp["component"]["custom_id"]: comp["component"] for comp in modal["components"]}


def preselected(field: dict[str, Any]) -> list[str]:
    return [o["value"] for o in field.get("options", []) if o.get("default")]


async def delivered(world: World, bot: InProcessBot, count: int = 1, **options: Any) -> Any:
    """A delivered job of `world.member` (no cooldown in these tests: each presses right after)."""
    await bot.db.guilds.update(world.guild.id, cooldown_seconds=0)
    await accepted(await world.generate(**options))
    job = (await bot.wait_finished(count))[-1]
    assert job.state == "delivered", job.error_message
    return job


async def confirm(world: World, inter: Any, user: Any, cost: int) -> Any:
    """The private, priced confirmation a form (or a press) leads to; Yes pressed; the accepting answer."""
    offer = await private_reply(inter)
    assert f"**{cost} credits**" in offer.content, offer.content
    return await world.fake.press_button(offer, next(i for i in custom_ids(offer) if i.endswith(":yes")), user.id)


async def test_edit_is_prefilled_confirmed_and_charged_to_the_presser(world: World, bot: InProcessBot) -> None:
    job = await delivered(world, bot, prompt="a red fox in the snow", duration=4, aspect_ratio="16:9")
    menu = await press(world, job, world.other, "edit")
    assert (await menu.wait_response(3)).type == 9
    fields = form_fields(menu.modal)
    assert fields["prompt"]["value"] == "a red fox in the snow"
    assert preselected(fields["duration"]) == ["4"] and preselected(fields["aspect_ratio"]) == ["16:9"]

    submit = await world.fake.submit_modal(menu, {"prompt": "a red fox in the rain", "duration": "8",
                                                  "aspect_ratio": "9:16"})
    answer = await accepted(await confirm(world, submit, world.other, 200))
    assert "200 credits" in answer.content
    done = await bot.wait_finished(2)
    edited = done[-1]
    assert (edited.user_id, edited.prompt, edited.duration, edited.aspect_ratio, edited.state) == (
        world.other.id, "a red fox in the rain", 8, "9:16", "delivered")
    assert await ledger_kinds(bot, edited.id) == ["hold", "charge"]
    assert await balance_of(bot, world, world.other) == (0, 0)  # 200 - 200: charged to whoever pressed
    assert await balance_of(bot, world, world.member) == (100, 0)  # the first video only
    assert await bot.db.ledger.verify() == []


async def test_edit_form_left_open_twenty_minutes_still_works_and_a_stale_confirmation_charges_nothing(
        world: World, bot: InProcessBot) -> None:
    job = await delivered(world, bot)
    menu = await press(world, job, world.member, "edit")
    await menu.wait_response(3)
    world.fake.clock.advance(20 * 60)  # the press's token is dead; the form answers from its own values
    offer = await private_reply(await world.fake.submit_modal(menu, {"prompt": "the fox sleeps"}))
    assert "**100 credits**" in offer.content, offer.content
    world.fake.clock.advance(20 * 60)  # the confirmation itself expires (15 minutes)
    yes = await world.fake.press_button(offer, next(i for i in custom_ids(offer) if i.endswith(":yes")),
                                        world.member.id)
    text = (await private_reply(yes)).content
    assert "no longer open" in text and "Nothing was charged" in text
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == 1
    assert await balance_of(bot, world, world.member) == (100, 0)
    assert await bot.db.ledger.verify() == []


async def test_a_confirmation_pressed_twice_makes_one_video(world: World, bot: InProcessBot) -> None:
    job = await delivered(world, bot)
    menu = await press(world, job, world.other, "edit")
    await menu.wait_response(3)
    offer = await private_reply(await world.fake.submit_modal(menu, {"prompt": "twice"}))
    yes_id = next(i for i in custom_ids(offer) if i.endswith(":yes"))
    first, second = await asyncio.gather(world.fake.press_button(offer, yes_id, world.other.id),
                                         world.fake.press_button(offer, yes_id, world.other.id))
    texts = [(await private_reply(first)).content, (await private_reply(second)).content]
    assert sum("held" in t for t in texts) == 1 and sum("no longer open" in t for t in texts) == 1, texts
    await bot.wait_finished(2)
    assert len(await bot.db.fetchall("SELECT id FROM jobs WHERE user_id = ?", (world.other.id,))) == 1
    assert await bot.db.ledger.verify() == []


async def test_buttons_of_an_erased_job_and_a_confirmation_from_before_a_restart(world: World) -> None:
    first = InProcessBot(world)
    await first.start()
    try:
        job = await delivered(world, first)
        menu = await press(world, job, world.other, "edit")
        await menu.wait_response(3)
        offer = await private_reply(await world.fake.submit_modal(menu, {"prompt": "before the restart"}))
    finally:
        await first.stop()
    second = InProcessBot(world)
    await second.start()
    try:
        yes = await world.fake.press_button(offer, next(i for i in custom_ids(offer) if i.endswith(":yes")),
                                            world.other.id)
        assert "no longer open" in (await private_reply(yes)).content
        menu = await press(world, job, world.other, "edit")  # the card's buttons still work after a restart
        assert (await menu.wait_response(3)).type == 9
        await second.db.reports.erase(world.guild.id, world.member.id)
        for action in ("reroll", "edit", "extend"):
            text = (await private_reply(await press(world, job, world.other, action))).content
            assert "no longer known" in text, (action, text)
        submit = await world.fake.submit_modal(menu, {"prompt": "after the erasure"})  # a form opened before
        assert "no longer known" in (await private_reply(submit)).content
        assert len(await second.db.fetchall("SELECT id FROM jobs")) == 0
        assert await balance_of(second, world, world.other) == (200, 0)
        assert await second.db.ledger.verify() == []
    finally:
        await second.stop()


async def test_extend_starts_from_the_last_frame_posted_to_discord(world: World, bot: InProcessBot) -> None:
    job = await delivered(world, bot, prompt="a paper boat drifts", aspect_ratio="16:9")
    menu = await press(world, job, world.other, "extend")
    assert (await menu.wait_response(3)).type == 9
    assert set(form_fields(menu.modal)) == {"prompt", "duration"}  # the shape is the video's own
    submit = await world.fake.submit_modal(menu, {"prompt": "the boat reaches the shore"})
    offer = await private_reply(submit, timeout=30)
    [frame] = offer.attachments
    assert frame.filename == "last-frame.png" and frame.content_type == "image/png"
    with Image.open(io.BytesIO(frame.data)) as img:
        assert min(img.size) >= 300 and img.size[0] > img.size[1]  # scaled up to the first-frame minimum
    answer = await accepted(await world.fake.press_button(
        offer, next(i for i in custom_ids(offer) if i.endswith(":yes")), world.other.id))
    assert "100 credits" in answer.content
    extended = (await bot.wait_finished(2))[-1]
    assert extended.state == "delivered" and extended.user_id == world.other.id, extended.error_message
    creates = world.sim.state.requests_to(CREATES, "POST")
    assert creates[-1].json["input"]["image_urls"] == [extended.image_url]
    assert extended.image_url and f"/attachments/{frame.id}/" in extended.image_url  # a Discord URL we checked
    assert await ledger_kinds(bot, extended.id) == ["hold", "charge"]
    assert await balance_of(bot, world, world.other) == (100, 0)
    assert await bot.db.ledger.verify() == []


async def test_extend_a_day_later_reads_the_posted_file_and_says_clearly_when_the_source_is_gone(
        world: World, bot: InProcessBot) -> None:
    job = await delivered(world, bot)
    world.fake.clock.advance(25 * 3600)  # the video service's link is dead; the post still has its file
    menu = await press(world, job, world.other, "extend")
    await menu.wait_response(3)
    offer = await private_reply(await world.fake.submit_modal(menu, {"prompt": "later"}), timeout=30)
    assert offer.attachments and "**100 credits**" in offer.content, offer.content

    world.fake.set_filesize_limit(world.guild.id, 20_000)  # the next video cannot be a file: a link post
    linked = await delivered(world, bot, count=2, prompt="posted as a link")
    assert not video_posts(world, linked.id)
    [card] = [m for m in world.fake.channel_messages(world.channel.id)
              if button_id("extend", linked.id) in custom_ids(m)]
    world.fake.clock.advance(25 * 3600)
    text = (await private_reply(await world.fake.press_button(card, button_id("extend", linked.id),
                                                              world.other.id))).content
    assert "no longer available" in text and "24 hours" in text and "Nothing was charged" in text, text
    assert_friendly(text)
    assert await balance_of(bot, world, world.other) == (200, 0)
    assert await bot.db.ledger.verify() == []


async def test_re_roll_and_edit_after_an_admin_refund_charge_the_presser_once(world: World, bot: InProcessBot) -> None:
    """A refunded video's buttons still work: the refund stays the first member's, the new video is the presser's;
    Edit re-checks the first frame at the confirmation (its link may be gone) and then charges nothing."""
    await bot.db.guilds.update(world.guild.id, cooldown_seconds=0)
    inter = await world.generate(attachments={"image": ("frame.png", png(640, 360), "image/png")})
    await accepted(inter)
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered" and job.image_url, job.error_message
    assert "Refunded" in (await private_reply(await admin_as(world, "refund", job=job.id[:8]))).content
    offer = await private_reply(await press(world, job, world.other, "reroll"))
    assert "Make this video again for **100 credits**? You have 200." in offer.content, offer.content
    await accepted(await world.fake.press_button(offer, next(i for i in custom_ids(offer) if i.endswith(":yes")),
                                                 world.other.id))
    again = (await bot.wait_finished(2))[-1]
    assert again.state == "delivered" and again.image_url == job.image_url  # the first frame, re-read and kept
    assert await ledger_kinds(bot, job.id) == ["hold", "charge", "refund"]
    assert await ledger_kinds(bot, again.id) == ["hold", "charge"]
    assert await balance_of(bot, world, world.member) == (200, 0)
    assert await balance_of(bot, world, world.other) == (100, 0)

    [frame_id] = inter.payload["data"]["resolved"]["attachments"]
    world.fake.world.files.pop(int(frame_id))  # the first frame is gone from Discord now: its link 404s
    menu = await press(world, job, world.other, "edit")
    await menu.wait_response(3)
    offer = await private_reply(await world.fake.submit_modal(menu, {"prompt": "edited"}))
    yes = await world.fake.press_button(offer, next(i for i in custom_ids(offer) if i.endswith(":yes")),
                                        world.other.id)
    text = (await private_reply(yes)).content  # the first frame is re-checked at the confirmation
    assert "first frame's link has expired" in text and "Nothing was charged" in text, text
    assert await balance_of(bot, world, world.other) == (100, 0)
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == 2
    assert await bot.db.ledger.verify() == []
