"""Members' input cannot reach the bot's network, spend its CPU before a refusal, or hide banned words
(issue 10, items 6, 7 and 8), end to end through the local Discord and the simulator.

The "inside" server below stands for a host on the bot's own network (a metadata service, an admin panel):
it serves a perfectly good picture, so the only thing keeping the bot away from it is the host check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.harness import InProcessBot, World, accepted, assert_friendly, assert_settled, png, private_reply

CREATES = "/v1/videos/generations"


class Inside:
    """A counting image server on 127.0.0.1 (another port than the local Discord's)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Inside:
        async def serve(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.Response(body=png(800, 600), content_type="image/png")

        app = web.Application()
        app.router.add_get("/{tail:.*}", serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def inside() -> AsyncIterator[Inside]:
    server = await Inside().start()
    try:
        yield server
    finally:
        await server.stop()


def creates(world: World) -> list[Any]:
    return world.sim.state.requests_to(CREATES, "POST")


def image_bytes_served(world: World, since: int = 0) -> int:
    """Bytes of attachments the local Discord served after the `since`-th download (the bot's image reads)."""
    files = world.fake.world.files
    return sum(files[i].size for i in world.fake.attachment_downloads[since:] if i in files)


async def animate(world: World, target: Any, user: Any = None, prompt: str = "the picture comes alive") -> Any:
    """Animate with Sora on `target` as `user`, through the modal; the modal's submit interaction."""
    user = user or world.member
    menu = await world.fake.context_menu(world.guild.id, world.channel.id, user.id, "Animate with Sora", target)
    assert (await menu.wait_response(3)).type == 9, "no modal"
    return await world.fake.submit_modal(menu, {"prompt": prompt, "duration": "4"})


# ---- item 6: only Discord's media hosts, and the upstream gets the URL that was checked ---------------------------

async def test_an_embed_is_read_from_discords_copy_never_from_the_members_link(world: World, bot: InProcessBot,
                                                                               inside: Inside) -> None:
    link = f"{inside.base_url}/latest/meta-data/cat.png"
    proxy = world.fake.media_proxy_url("cat.png", png(800, 600), "image/png")
    target = world.fake.post_user_message(world.channel.id, world.other.id, link, embeds=[{
        "type": "image", "url": link,
        "thumbnail": {"url": link, "proxy_url": proxy, "width": 800, "height": 600},
    }])
    await accepted(await animate(world, target))
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    [create] = creates(world)
    assert create.json["input"]["image_urls"] == [proxy]  # the checked URL, exactly
    assert job.image_url == proxy
    assert inside.hits == []  # the member's own link was never opened
    await assert_settled(bot, world, job)


async def test_an_embed_whose_copy_is_not_on_discord_is_refused_without_a_request(world: World, bot: InProcessBot,
                                                                                  inside: Inside) -> None:
    link = f"{inside.base_url}/admin/cat.png"
    target = world.fake.post_user_message(world.channel.id, world.other.id, link, embeds=[{
        "type": "rich", "url": link, "image": {"url": link, "proxy_url": link},
    }])
    answer = await private_reply(await animate(world, target))
    assert "posted on Discord" in answer.content, answer.content
    assert_friendly(answer.content)
    assert inside.hits == []
    assert creates(world) == [] and await bot.db.fetchall("SELECT id FROM jobs") == []


async def test_a_forwarded_messages_image_is_animated(world: World, bot: InProcessBot) -> None:
    elsewhere = world.fake.add_channel(world.guild.id, "photos")
    original = world.fake.post_user_message(elsewhere.id, world.other.id, "my cat",
                                            attachments=[("cat.jpg", png(640, 480, "JPEG"), "image/jpeg")])
    forward = world.fake.post_user_message(world.channel.id, world.other.id, forward=original)
    assert forward.attachments == [] and forward.embeds == []  # the picture is only in the snapshot
    submit = await animate(world, forward)
    await accepted(submit)
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    [create] = creates(world)
    [snapshot] = world.fake.world.message_payload(forward)["message_snapshots"]
    assert create.json["input"]["image_urls"] == [snapshot["message"]["attachments"][0]["url"]]
    await assert_settled(bot, world, job)


# ---- item 7: cheap refusals before the image is read ----------------------------------------------------------------

async def test_a_refused_member_costs_no_image_download(world: World, bot: InProcessBot) -> None:
    """Blocked, out of credits, in the wrong channel: refused before a single byte of the image is read."""
    picture = ("frame.png", png(1920, 1080), "image/png")
    start = len(world.fake.attachment_downloads)

    await bot.db.guilds.block(world.guild.id, world.member.id, "spamming", world.admin.id)
    answer = await private_reply(await world.generate(attachments={"image": picture}))
    assert "blocked" in answer.content.lower(), answer.content
    target = world.fake.post_user_message(world.channel.id, world.other.id, "", attachments=[picture])
    answer = await private_reply(await animate(world, target))
    assert "blocked" in answer.content.lower(), answer.content

    await bot.db.ledger.set_balance(world.guild.id, world.other.id, 0, world.admin.id, "test")
    answer = await private_reply(await world.generate(user=world.other, attachments={"image": picture}))
    assert "credits" in answer.content.lower(), answer.content

    read = image_bytes_served(world, start)
    assert read == 0, f"{read} image bytes read for refused members"
    assert creates(world) == [] and await bot.db.fetchall("SELECT id FROM jobs") == []
    assert await bot.db.ledger.verify() == []


# ---- item 8: invisible characters do not hide a banned word -------------------------------------------------------

async def test_a_banned_word_hidden_by_invisible_characters_is_refused(world: World, bot: InProcessBot) -> None:
    await bot.db.guilds.update(world.guild.id, banned_words=("zebracorn",))
    for hidden in ("zebra\u200bcorn", "zeb\u2060ra\u00adcorn", "ZEBRA\u200dCORN", "\ufeffzebracorn"):
        answer = await private_reply(await world.generate(prompt=f"a {hidden} in a meadow"))
        assert "allow" in answer.content and "zebra" not in answer.content.lower(), answer.content
    assert creates(world) == [] and await bot.db.fetchall("SELECT id FROM jobs") == []

    await accepted(await world.generate(prompt="a fox\u2060 in the sn\u00adow, at dusk"))
    [job] = await bot.wait_finished(1)
    [create] = creates(world)
    assert create.json["input"]["prompt"] == "a fox in the snow, at dusk"  # as written, minus the invisible
    assert job.prompt == "a fox in the snow, at dusk"
