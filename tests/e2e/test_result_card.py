"""The result card (issue 15, item 7) and `/sora jobs` with queue places, ETAs and links (item 6), through the
local Discord: the delivered message carries the video, the prompt (escaped, mention-proof, cut to fit), the
duration, ratio and cost, and the Re-roll, Edit and Extend buttons; a queued job's status shows its place and
estimated start."""

from __future__ import annotations

import re
from typing import Any

from bot.discord_app.items import button_id
from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    assert_settled,
    private_reply,
    status_message,
    video_posts,
)

NASTY = "**bold** @everyone <@&123> <@1> `code` ||spoiler|| " + "a long tail " * 500  # ~6,000 characters


def buttons(message: Any) -> list[tuple[str, str]]:
    return [(c["label"], c["custom_id"]) for row in message.components or [] for c in row.get("components", [])]


async def test_the_delivered_card_carries_video_prompt_choices_cost_and_three_buttons(world: World,
                                                                                      bot: InProcessBot) -> None:
    await accepted(await world.generate(prompt=NASTY[:5000], duration=8, aspect_ratio="9:16"))
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    [card] = video_posts(world, job.id)
    assert card.content.startswith(f"<@{world.member.id}> your video is ready!")
    assert len(card.content) <= 2000
    assert "8 s · 9:16 · 200 credits" in card.content
    assert "credits left" not in card.content  # a public card names the cost, never the member's balance
    quoted = next(line for line in card.content.splitlines() if line.startswith("> "))
    assert "\\*\\*bold\\*\\*" in quoted and "…" in quoted  # markdown inert, cut to fit
    assert card.pings[0].users == {world.member.id} and not card.pings[0].roles and not card.pings[0].everyone
    assert buttons(card) == [("Re-roll", button_id("reroll", job.id)), ("Edit", button_id("edit", job.id)),
                             ("Extend", button_id("extend", job.id))]
    assert card.attachments[0].filename.endswith(".mp4")
    await assert_settled(bot, world, job, start=200)

    listing = await private_reply(await world.fake.slash(world.guild.id, world.channel.id, world.member.id,
                                                         "sora jobs"))
    link = re.search(r"\[open the video\]\((https://discord\.com/channels/(\d+)/(\d+)/(\d+))\)", listing.content)
    assert link is not None, listing.content
    assert (int(link[2]), int(link[3]), int(link[4])) == (world.guild.id, card.channel_id, card.id)
    assert "8 s · 9:16 · 200 credits" in listing.content and "@everyone" not in listing.content.replace(
        "@\u200beveryone", "")


async def test_a_queued_job_shows_its_place_and_estimated_start(world: World, bot: InProcessBot) -> None:
    await bot.db.guilds.update(world.guild.id, max_jobs_per_guild=1, cooldown_seconds=0)
    await accepted(await world.generate(user=world.other, prompt="a quick first one"))
    await bot.wait_finished(1)  # one finished job: what the estimate is judged by
    world.sim.state.configure({"processing_seconds": 1000})
    await accepted(await world.generate(user=world.other, prompt="holding the slot"))
    await bot.wait_job(lambda j: j.prompt == "holding the slot" and j.state == "running")
    await accepted(await world.generate(prompt="waiting for it"))
    job = await bot.wait_job(lambda j: j.prompt == "waiting for it" and j.status_message_id is not None)
    status = await world.fake.wait_for(
        lambda: (m := status_message(world, job)) is not None and "starts about <t:" in m.content and m,
        what="the queued status with an estimated start")
    assert re.search(r"#1 in the queue, starts about <t:\d+:R>", status.content), status.content

    listing = await private_reply(await world.fake.slash(world.guild.id, world.channel.id, world.member.id,
                                                         "sora jobs"))
    assert re.search(r"#1 in the queue, starts about <t:\d+:R>", listing.content), listing.content
    world.sim.state.configure({"processing_seconds": 0.2})
    world.sim.state.clock.advance(1000)
    done = await bot.wait_finished(3)
    assert [j.state for j in done] == ["delivered"] * 3
    assert bot.bot is not None and await bot.db.ledger.verify() == []
