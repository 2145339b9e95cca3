"""Animate with Sora (context menu → modal → the same flow with the message's image) and the Re-roll button
(another member, a priced confirmation, charged to the presser, and still working after a restart)."""

from __future__ import annotations

from typing import Any

import pytest
from fake_discord import InteractionError
from fake_discord.messages import delete_message

from bot.discord_app.items import reroll_id
from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    admin_as,
    assert_friendly,
    assert_settled,
    png,
    private_reply,
    video_posts,
)

CREATES = "/v1/videos/generations"


def button(message: Any, label: str) -> str:
    """The custom_id of the button with this label on a message."""
    for row in message.components:
        for comp in row.get("components", []):
            if comp.get("label") == label:
                return str(comp["custom_id"])
    raise AssertionError(f"no {label!r} button in {message.components}")


# ---- Animate with Sora --------------------------------------------------------------------------------------------

async def test_animate_a_message_image_runs_the_generate_flow_with_it(world: World, bot: InProcessBot) -> None:
    target = world.fake.post_user_message(world.channel.id, world.other.id, "look at my cat",
                                          attachments=[("cat.png", png(800, 600), "image/png")])
    inter = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id, "Animate with Sora",
                                          target)
    assert (await inter.wait_response(3)).type == 9
    assert inter.modal is not None
    submit = await world.fake.submit_modal(inter, {"prompt": "the cat starts to dance", "duration": "8",
                                                   "aspect_ratio": "9:16"})
    answer = await accepted(submit)
    assert "200 credits" in answer.content
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    [resolved] = inter.payload["data"]["resolved"]["messages"].values()
    url = resolved["attachments"][0]["url"]
    [create] = world.sim.state.requests_to(CREATES, "POST")
    assert create.json["input"] == {"prompt": "the cat starts to dance", "duration": 8, "aspect_ratio": "9:16",
                                    "image_urls": [url]}
    assert len(video_posts(world, job.id)) == 1
    await assert_settled(bot, world, job)  # 200 - 200 = 0 left


async def test_animate_a_message_without_an_image_is_refused_privately(world: World, bot: InProcessBot) -> None:
    target = world.fake.post_user_message(world.channel.id, world.other.id, "just words")
    inter = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id, "Animate with Sora",
                                          target)
    answer = await private_reply(inter)
    assert "no image" in answer.content
    assert inter.modal is None
    assert not world.sim.state.requests_to(CREATES) and await bot.db.fetchall("SELECT id FROM jobs") == []


def _form_fields(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The form's inputs by custom id, each with its label (the modal's own component tree)."""
    fields = {}
    for comp in modal["components"]:
        inner = comp.get("component") or (comp.get("components") or [{}])[0]
        fields[inner["custom_id"]] = {**inner, "label_text": comp.get("label")}
    return fields


async def test_animate_form_offers_duration_and_ratio_as_choices(world: World, bot: InProcessBot) -> None:
    """Issue 15, item 5: duration and aspect ratio are selects in labels (priced choices), the prompt holds at
    most 4,000 characters; a client can send only the offered values (the local Discord refuses others like
    Discord), and a forged value is refused by the bot for free."""
    target = world.fake.post_user_message(world.channel.id, world.member.id, "",
                                          attachments=[("cat.jpg", png(640, 480, "JPEG"), "image/jpeg")])
    inter = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id, "Animate with Sora",
                                          target)
    await inter.wait_response(3)
    assert inter.modal is not None
    assert all(comp["type"] == 18 for comp in inter.modal["components"])  # every field in a label
    fields = _form_fields(inter.modal)
    assert fields["prompt"]["type"] == 4 and fields["prompt"]["max_length"] == 4000
    assert [(o["label"], o["value"], o.get("default", False)) for o in fields["duration"]["options"]] == [
        ("4 s · 100 credits", "4", True), ("8 s · 200 credits", "8", False), ("12 s · 300 credits", "12", False)]
    assert [o["value"] for o in fields["aspect_ratio"]["options"]] == ["16:9", "9:16"]
    with pytest.raises(InteractionError):  # a Discord client offers only the choices
        await world.fake.submit_modal(inter, {"prompt": "fly", "duration": "7"})
    with pytest.raises(InteractionError):
        await world.fake.submit_modal(inter, {"prompt": "x" * 4001})

    for values, phrase in (({"prompt": "fly", "duration": "7"}, "4, 8 or 12"),
                           ({"prompt": "fly", "duration": "x9"}, "4, 8 or 12"),
                           ({"prompt": "fly", "aspect_ratio": "4:3 "}, "16:9 or 9:16")):
        menu = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id,
                                             "Animate with Sora", target)
        await menu.wait_response(3)
        answer = await private_reply(await world.fake.submit_modal(menu, values, ignore_choices=True))
        assert phrase in answer.content and "Nothing was charged" in answer.content, answer.content
        assert_friendly(answer.content)
    assert not world.sim.state.requests_to(CREATES) and await bot.db.fetchall("SELECT id FROM jobs") == []
    balance = await bot.db.ledger.balance(world.guild.id, world.member.id)
    assert (balance.available, balance.held) == (200, 0)
    assert await bot.db.ledger.verify() == []


async def test_animate_uses_the_defaults_a_member_leaves_alone(world: World, bot: InProcessBot) -> None:
    """Only the prompt typed: the form's preselected choices (the server's default duration, 16:9) are sent."""
    await private_reply(await admin_as(world, "config defaults", default_duration=8))
    target = world.fake.post_user_message(world.channel.id, world.other.id, "",
                                          attachments=[("cat.png", png(800, 600), "image/png")])
    inter = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id, "Animate with Sora",
                                          target)
    await inter.wait_response(3)
    answer = await accepted(await world.fake.submit_modal(inter, {"prompt": "the cat yawns"}))
    assert "200 credits" in answer.content
    [job] = await bot.wait_finished(1)
    assert (job.state, job.duration, job.aspect_ratio) == ("delivered", 8, "16:9"), job.error_message
    await assert_settled(bot, world, job)


# ---- Re-roll ------------------------------------------------------------------------------------------------------

async def reroll_as(world: World, message: Any, job_id: str, user: Any) -> Any:
    """Press Re-roll as `user`, check the priced private confirmation, confirm; return the confirming interaction."""
    press = await world.fake.press_button(message, reroll_id(job_id), user.id)
    confirm = await private_reply(press)
    assert "100 credits" in confirm.content and "You have 200" in confirm.content, confirm.content
    yes = await world.fake.press_button(confirm, button(confirm, "Yes, make it"), user.id)
    await accepted(yes)
    return yes


async def test_reroll_by_another_member_is_confirmed_and_charged_to_them(world: World, bot: InProcessBot) -> None:
    await accepted(await world.generate(prompt="a paper boat in the rain"))
    [first] = await bot.wait_finished(1)
    [delivered] = video_posts(world, first.id)

    # Cancel first: nothing happens
    press = await world.fake.press_button(delivered, reroll_id(first.id), world.other.id)
    confirm = await private_reply(press)
    cancel = await world.fake.press_button(confirm, button(confirm, "Cancel"), world.other.id)
    await cancel.wait_response(3)
    await world.fake.wait_for(lambda: "Cancelled" in (world.fake.message(confirm.id).content or ""), timeout=5)
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == 1

    await reroll_as(world, delivered, first.id, world.other)
    [_, second] = await bot.wait_finished(2)
    assert second.state == "delivered", second.error_message
    assert (second.user_id, second.prompt, second.duration) == (world.other.id, first.prompt, first.duration)
    await assert_settled(bot, world, first, world.member)
    await assert_settled(bot, world, second, world.other)
    assert len(world.sim.state.requests_to(CREATES, "POST")) == 2


async def test_reroll_button_works_after_a_restart(world: World) -> None:
    first_bot = InProcessBot(world)
    await first_bot.start()
    try:
        await accepted(await world.generate())
        [first] = await first_bot.wait_finished(1)
        [delivered] = video_posts(world, first.id)
    finally:
        await first_bot.stop()

    second_bot = InProcessBot(world)
    await second_bot.start()
    try:
        await reroll_as(world, delivered, first.id, world.other)
        [_, again] = await second_bot.wait_finished(2)
        assert again.state == "delivered" and again.user_id == world.other.id
        await assert_settled(second_bot, world, first, world.member)
        await assert_settled(second_bot, world, again, world.other)
    finally:
        await second_bot.stop()


# ---- Re-roll re-reads the first frame it reuses (issue 10, item 9) ------------------------------------------------

async def reroll_refused(world: World, bot: InProcessBot, message: Any, job_id: str, user: Any) -> str:
    """Press Re-roll as `user` and confirm; the private answer, checked to have cost and sent nothing."""
    before = await bot.db.ledger.balance(world.guild.id, user.id)
    posts, jobs = len(world.sim.state.requests_to(CREATES, "POST")), len(await bot.db.fetchall("SELECT id FROM jobs"))
    press = await world.fake.press_button(message, reroll_id(job_id), user.id)
    confirm = await private_reply(press)
    yes = await world.fake.press_button(confirm, button(confirm, "Yes, make it"), user.id)
    answer = await private_reply(yes)
    assert "held" not in answer.content and "prohibited" not in answer.content.lower(), answer.content
    assert_friendly(answer.content)
    after = await bot.db.ledger.balance(world.guild.id, user.id)
    assert (after.available, after.held) == (before.available, before.held)
    assert len(world.sim.state.requests_to(CREATES, "POST")) == posts  # no upstream POST
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == jobs
    assert await bot.db.ledger.verify() == []
    return str(answer.content)


async def test_reroll_after_the_first_frame_was_deleted_is_refused_for_free(world: World, bot: InProcessBot) -> None:
    target = world.fake.post_user_message(world.channel.id, world.other.id, "my cat",
                                          attachments=[("cat.png", png(800, 600), "image/png")])
    menu = await world.fake.context_menu(world.guild.id, world.channel.id, world.member.id, "Animate with Sora",
                                         target)
    await menu.wait_response(3)
    await accepted(await world.fake.submit_modal(menu, {"prompt": "the cat dances", "duration": "4"}))
    [first] = await bot.wait_finished(1)
    assert first.state == "delivered" and first.image_url, first.error_message
    [delivered] = video_posts(world, first.id)

    delete_message(world.fake, target)  # its author deletes the picture: Discord's link to it now 404s
    text = await reroll_refused(world, bot, delivered, first.id, world.other)
    assert "first frame's link has expired" in text and "attach it again with /sora generate" in text, text


async def test_reroll_of_a_first_frame_that_is_no_longer_an_image_is_refused_for_free(world: World,
                                                                                      bot: InProcessBot) -> None:
    inter = await world.generate(attachments={"image": ("frame.png", png(640, 360), "image/png")})
    await accepted(inter)
    [first] = await bot.wait_finished(1)
    assert first.state == "delivered", first.error_message
    [delivered] = video_posts(world, first.id)
    [attachment] = inter.payload["data"]["resolved"]["attachments"].values()
    reads = len(world.fake.attachment_downloads)
    await reroll_as(world, delivered, first.id, world.other)  # still a picture: re-read, accepted
    [_, second] = await bot.wait_finished(2)
    assert second.state == "delivered" and second.image_url == first.image_url, second.error_message
    assert len(world.fake.attachment_downloads) == reads + 1

    world.fake.world.files[int(attachment["id"])].data = b"<html>a page now, not a picture</html>"  # swapped

    text = await reroll_refused(world, bot, delivered, first.id, world.admin)
    assert "no longer leads to a picture" in text and "/sora generate" in text, text


async def test_reroll_of_an_image_job_after_its_attachment_link_expired_is_refused_for_free(
        world: World, bot: InProcessBot) -> None:
    """Discord's attachment links carry an expiry (`ex=`, about a day): the local Discord answers 404 after it.
    A Re-roll the next day re-reads the first frame from the stored link, finds it expired, and refuses for
    free in plain words (no upstream create, nothing held)."""
    inter = await world.generate(attachments={"image": ("frame.png", png(640, 360), "image/png")})
    await accepted(inter)
    [first] = await bot.wait_finished(1)
    assert first.state == "delivered" and first.image_url and "ex=" in first.image_url, first.error_message
    [delivered] = video_posts(world, first.id)
    world.fake.clock.advance(world.fake.world.attachment_url_lifetime + 60)  # the next day
    [frame_id] = inter.payload["data"]["resolved"]["attachments"]
    text = await reroll_refused(world, bot, delivered, first.id, world.other)
    assert "first frame's link has expired" in text and "attach it again with /sora generate" in text, text
    assert world.fake.expired_attachment_reads == [int(frame_id)]  # the bot read the link; Discord said expired
