"""Checks made before any credit is held or the upstream called: prompt, member, channel, limits, budget, balance,
and the first-frame image read from its own bytes (format, damage, size, shape, animation, bombs)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.e2e.harness import InProcessBot, World, accepted, assert_friendly, assert_settled, png, private_reply

CREATES = "/v1/videos/generations"


def creates(world: World) -> int:
    return len(world.sim.state.requests_to(CREATES, "POST"))


async def refused(world: World, bot: InProcessBot, *, user: Any = None, channel: Any = None, **options: Any) -> str:
    """Run /sora generate expecting a private refusal; nothing held, nothing sent upstream."""
    user = user or world.member
    before = await bot.db.ledger.balance(world.guild.id, user.id)
    posts, jobs = creates(world), len(await bot.db.fetchall("SELECT id FROM jobs"))
    attachments = options.pop("attachments", None)
    options.setdefault("prompt", "a red fox running through snow")
    inter = await world.fake.slash(world.guild.id, (channel or world.channel).id, user.id, "sora generate",
                                   options=options, attachments=attachments)
    answer = await private_reply(inter)
    assert "held" not in answer.content, answer.content
    assert "Something went wrong" not in answer.content, answer.content
    assert_friendly(answer.content)
    assert answer.allowed_mentions == {"parse": []}
    after = await bot.db.ledger.balance(world.guild.id, user.id)
    assert (after.available, after.held) == (before.available, before.held)
    assert creates(world) == posts
    assert len(await bot.db.fetchall("SELECT id FROM jobs")) == jobs
    assert await bot.db.ledger.verify() == []
    return str(answer.content)


# ---- member, channel, limits --------------------------------------------------------------------------------------

async def test_empty_prompt_and_banned_words_are_refused(world: World, bot: InProcessBot) -> None:
    assert "empty" in (await refused(world, bot, prompt="   \t  ")).lower()
    await bot.db.guilds.update(world.guild.id, banned_words=("dragon fire", "kraken"))
    text = await refused(world, bot, prompt="A KRAKEN rises from the sea")
    assert "kraken" not in text.lower() and "allow" in text.lower()  # says why, names no word
    text = await refused(world, bot, prompt="breathing dragon   fire at night")
    assert "dragon" not in text.lower()
    await accepted(await world.generate(prompt="a dragonfly over a pond"))  # a word, not a substring


async def test_blocked_member_other_channel_and_budget_are_refused(world: World, bot: InProcessBot) -> None:
    await bot.db.guilds.block(world.guild.id, world.member.id, "spamming", world.admin.id)
    assert "blocked" in (await refused(world, bot)).lower()

    allowed = world.fake.add_channel(world.guild.id, "videos")
    await bot.db.guilds.update(world.guild.id, allowed_channel_ids=(allowed.id,))
    text = await refused(world, bot, user=world.other)
    assert f"<#{allowed.id}>" in text

    await bot.db.guilds.update(world.guild.id, allowed_channel_ids=(), daily_budget=50)
    assert "budget" in (await refused(world, bot, user=world.other)).lower()


async def test_cooldown_too_many_jobs_and_balance(world: World, bot: InProcessBot) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    await accepted(await world.generate())
    await bot.wait_job(lambda j: j.state == "running")  # its one POST is made before counting the others'
    text = await refused(world, bot)  # default cooldown: 30 s between a member's jobs
    assert "wait" in text.lower() or "again in" in text.lower(), text

    await bot.db.guilds.update(world.guild.id, cooldown_seconds=0, max_jobs_per_member=1)
    text = await refused(world, bot)
    assert "at once" in text.lower() or "limit" in text.lower() or "running" in text.lower(), text

    assert "credits" in (await refused(world, bot, user=world.other, duration=12)).lower()  # 300 > 200
    await bot.db.ledger.set_balance(world.guild.id, world.other.id, 0, world.admin.id, "test")
    assert "credits" in (await refused(world, bot, user=world.other)).lower()


# ---- images -------------------------------------------------------------------------------------------------------

def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (400, 400), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)


def truncated_jpeg() -> bytes:
    data = png(640, 480, "JPEG")
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    return encode(Image.new("1", (8000, 8000)), "PNG")  # 64 megapixels in a few KB


REFUSED_IMAGES = [
    ("gif-renamed", lambda: ("cat.png", encode(Image.new("RGB", (640, 360)), "GIF"), "image/png"), "GIF"),
    ("truncated-jpeg", lambda: ("cat.jpg", truncated_jpeg(), "image/jpeg"), "damaged"),
    ("299px", lambda: ("cat.png", png(299, 600), "image/png"), "300"),
    ("beyond-2:5", lambda: ("tall.png", png(300, 751), "image/png"), "2:5"),
    ("beyond-5:2", lambda: ("wide.png", png(751, 300), "image/png"), "5:2"),
    ("animated-webp", lambda: ("anim.webp", animated_webp(), "image/webp"), "animated"),
    ("bomb", lambda: ("bomb.png", bomb_png(), "image/png"), "too large"),
    ("not-an-image", lambda: ("cat.png", b"this is not a picture at all", "image/png"), "couldn't read"),
]


@pytest.mark.parametrize(("make", "phrase"), [(m, p) for _, m, p in REFUSED_IMAGES],
                         ids=[n for n, _, _ in REFUSED_IMAGES])
async def test_bad_first_frames_are_refused_before_any_hold(world: World, bot: InProcessBot, make: Any,
                                                            phrase: str) -> None:
    text = await refused(world, bot, attachments={"image": make()})
    assert phrase.lower() in text.lower(), text


async def test_an_image_over_10_mb_is_refused_without_downloading_it(world: World, bot: InProcessBot) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * 10_000_001
    downloads = len(world.fake.attachment_downloads)
    text = await refused(world, bot, attachments={"image": ("huge.png", big, "image/png")})
    assert "10 MB" in text
    assert len(world.fake.attachment_downloads) == downloads


@pytest.mark.parametrize(("width", "height", "fmt"), [(640, 360, "PNG"), (300, 750, "JPEG"), (750, 300, "WEBP")],
                         ids=["png", "exactly-2:5-jpeg", "exactly-5:2-webp"])
async def test_an_accepted_image_reaches_the_upstream_as_the_attachment_url(world: World, bot: InProcessBot,
                                                                            width: int, height: int,
                                                                            fmt: str) -> None:
    name = f"frame.{fmt.lower()}"
    inter = await world.generate(attachments={"image": (name, png(width, height, fmt), f"image/{fmt.lower()}")})
    await accepted(inter)
    [attachment] = inter.payload["data"]["resolved"]["attachments"].values()
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    [create] = world.sim.state.requests_to(CREATES, "POST")
    assert create.json["input"]["image_urls"] == [attachment["url"]]
    assert job.image_url == attachment["url"]
    await assert_settled(bot, world, job)
