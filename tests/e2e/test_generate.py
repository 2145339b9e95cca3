"""`/sora generate` end to end: acknowledged at once, status shown, video posted byte for byte, charged once."""

from __future__ import annotations

import aiohttp

from tests.e2e.harness import InProcessBot, World, both_backends

EPHEMERAL = 64


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


@both_backends
async def test_happy_path_delivers_the_video_and_charges_once(world: World, bot: InProcessBot) -> None:
    inter = await world.generate(prompt="a red fox @everyone <@&123> running", duration=4)
    response = await inter.wait_response(3)
    assert response.type == 5
    assert response.data["flags"] & EPHEMERAL
    accepted = await inter.wait_original(lambda m: "held" in m.content, timeout=10)
    assert "100 credits" in accepted.content

    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", job.error_message
    messages = world.fake.channel_messages(world.channel.id, include_ephemeral=False)
    delivered = [m for m in messages if m.attachments]
    assert len(delivered) == 1
    [video] = delivered[0].attachments
    assert video.data == await fetch(job.result_url or "")  # byte for byte what the upstream made
    assert delivered[0].allowed_mentions["parse"] == []
    assert [int(u) for u in delivered[0].allowed_mentions["users"]] == [world.member.id]
    assert "@everyone" not in delivered[0].content.replace("@\u200beveryone", "")

    status = [m for m in messages if not m.attachments and "Video for" in m.content]
    assert len(status) == 1
    assert status[0].allowed_mentions == {"parse": []}
    assert "Done" in status[0].content and "100 credits charged" in status[0].content
    assert "4 s · 16:9 · 100 credits" in status[0].content

    balance = await bot.db.ledger.balance(world.guild.id, world.member.id)
    assert (balance.available, balance.held) == (100, 0)
    assert await bot.db.ledger.verify() == []
    creates = world.sim.state.requests_to("/v1/videos/generations", "POST")
    assert len(creates) == 1
    assert creates[0].json["input"] == {"prompt": "a red fox @everyone <@&123> running", "duration": 4,
                                        "aspect_ratio": "16:9"}
