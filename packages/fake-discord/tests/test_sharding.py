"""Sharding in the fake, against the REAL discord.py `AutoShardedBot`: each guild's events reach only the
session of its shard, as Discord routes them, so several bot processes can split the guilds between them.

Every wait is bounded; nothing sleeps hoping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from fake_discord import FakeDiscord, patch_discord_py, shard_of


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        with patch_discord_py(fake):
            yield fake


def make_bot(answers: list[tuple[int | None, int]], **shards: Any) -> commands.AutoShardedBot:
    """An AutoShardedBot with one global command, `/where`, that records (guild, shard) of each press."""
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(),
                                  allowed_mentions=discord.AllowedMentions.none(), guild_ready_timeout=0.05,
                                  **shards)

    @bot.tree.command(name="where", description="which shard answers")
    async def where(interaction: discord.Interaction) -> None:
        shard = interaction.guild.shard_id if interaction.guild is not None else 0
        answers.append((interaction.guild_id, shard))
        await interaction.response.send_message(f"shard {shard}")

    return bot


async def start(bot: commands.AutoShardedBot, fake: FakeDiscord) -> asyncio.Task[None]:
    task = asyncio.create_task(bot.start(fake.token))
    await asyncio.wait_for(bot.wait_until_ready(), 15)
    return task


async def stop(bot: commands.AutoShardedBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, 10)


def test_add_guild_on_a_shard_picks_an_id_of_that_shard() -> None:
    async def main() -> None:
        async with FakeDiscord() as fake:
            for count in (1, 2, 3, 5):
                for shard_id in range(count):
                    guild = fake.add_guild(f"g{shard_id}/{count}", shard=(shard_id, count))
                    assert shard_of(guild.id, count) == shard_id == (guild.id >> 22) % count
    asyncio.run(main())


async def test_gateway_bot_says_shards_and_session_start_limit(fake: FakeDiscord) -> None:
    fake.gateway.recommended_shards = 3
    async with aiohttp.ClientSession() as http, http.get(
            f"{fake.rest_base}/gateway/bot", headers={"Authorization": f"Bot {fake.token}"}) as resp:
        body = await resp.json()
    assert body["shards"] == 3 and body["url"] == fake.gateway_url
    limit = body["session_start_limit"]
    assert limit["max_concurrency"] == fake.gateway.max_concurrency >= 2
    assert limit["remaining"] == limit["total"] - fake.identify_count


async def test_two_processes_split_the_guilds_by_shard(fake: FakeDiscord) -> None:
    """Shard 0 and shard 1 of 2 in two clients: READY and GUILD_CREATE carry only each shard's guilds, and a
    command in a guild is answered by the client holding its shard, never by the other."""
    guilds = [fake.add_guild(f"g{i}", shard=(i % 2, 2)) for i in range(4)]
    channels = {g.id: fake.add_channel(g.id, "general") for g in guilds}
    user = fake.add_user("alice")
    for g in guilds:
        fake.add_member(g.id, user.id)
    answers: list[list[tuple[int | None, int]]] = [[], []]
    bots = [make_bot(answers[i], shard_count=2, shard_ids=[i]) for i in range(2)]
    tasks = [await start(bots[0], fake), await start(bots[1], fake)]
    try:
        await bots[0].tree.sync()
        for i, bot in enumerate(bots):
            assert {g.id for g in bot.guilds} == {g.id for g in guilds if shard_of(g.id, 2) == i}
        sessions = fake.gateway.shard_sessions()
        assert set(sessions) == {(0, 2), (1, 2)}
        for (shard_id, _), session in sessions.items():
            ready = next(data for _, event, data in session.buffer if event == "READY")
            assert {int(g["id"]) for g in ready["guilds"]} == {g.id for g in guilds if shard_of(g.id, 2) == shard_id}
            assert ready["shard"] == [shard_id, 2]
        for g in guilds:
            inter = await fake.slash(g.id, channels[g.id].id, user.id, "where")
            assert (await inter.wait_original(timeout=10)).content == f"shard {shard_of(g.id, 2)}"
        assert answers[0] == [(g.id, 0) for g in guilds if shard_of(g.id, 2) == 0]
        assert answers[1] == [(g.id, 1) for g in guilds if shard_of(g.id, 2) == 1]
        late = fake.add_guild("late", shard=(1, 2))  # the bot joins a guild: GUILD_CREATE on shard 1 only
        await fake.wait_for(lambda: bots[1].get_guild(late.id) is not None, 5, "late guild on shard 1")
        assert bots[0].get_guild(late.id) is None
        assert not [d for _, e, d in sessions[(0, 2)].buffer if e == "GUILD_CREATE" and int(d["id"]) == late.id]
    finally:
        for bot, task in zip(bots, tasks, strict=True):
            await stop(bot, task)


async def test_dms_arrive_on_shard_zero(fake: FakeDiscord) -> None:
    guilds = [fake.add_guild(f"g{i}", shard=(i, 2)) for i in range(2)]
    user = fake.add_user("alice")
    dm = fake.world.dm_channel(user.id)
    answers: list[list[tuple[int | None, int]]] = [[], []]
    bots = [make_bot(answers[i], shard_count=2, shard_ids=[i]) for i in range(2)]
    for bot in bots:
        bot.tree.get_command("where").allowed_contexts = app_commands.AppCommandContext(  # type: ignore[union-attr]
            guild=True, dm_channel=True)
    tasks = [await start(bots[0], fake), await start(bots[1], fake)]
    try:
        await bots[0].tree.sync()
        inter = await fake.slash(None, dm.id, user.id, "where")
        assert (await inter.wait_original(timeout=10)).content == "shard 0"
        assert answers == [[(None, 0)], []]
        assert guilds  # one guild per shard, so both sessions are busy ones
    finally:
        for bot, task in zip(bots, tasks, strict=True):
            await stop(bot, task)


async def test_one_client_without_shard_ids_connects_every_recommended_shard(fake: FakeDiscord) -> None:
    """No shard_count: discord.py asks GET /gateway/bot and connects every shard itself, and sees every guild."""
    fake.gateway.recommended_shards = 2
    guilds = [fake.add_guild(f"g{i}", shard=(i, 2)) for i in range(2)]
    answers: list[tuple[int | None, int]] = []
    bot = make_bot(answers)
    bot.before_identify_hook = _no_wait  # type: ignore[method-assign]  # the fake allows 16 at once
    task = await start(bot, fake)
    try:
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert {g.id for g in bot.guilds} == {g.id for g in guilds}
        assert set(fake.gateway.shard_sessions()) == {(0, 2), (1, 2)}
    finally:
        await stop(bot, task)


async def _no_wait(shard_id: int | None, *, initial: bool = False) -> None:
    return None


async def _identify(fake: FakeDiscord, http: aiohttp.ClientSession, shard: Any) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(fake.gateway_url)
    hello = json.loads((await ws.receive(timeout=5)).data)
    assert hello["op"] == 10
    await ws.send_str(json.dumps({"op": 2, "d": {"token": fake.token, "intents": 1, "shard": shard,
                                                "properties": {}}}))
    return ws


async def _next_dispatch(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def test_a_shard_already_connected_is_refused_with_4005_and_free_again_after_close(fake: FakeDiscord) -> None:
    fake.add_guild("g", shard=(1, 2))
    async with aiohttp.ClientSession() as http:
        first = await _identify(fake, http, [1, 2])
        assert (await _next_dispatch(first))["t"] == "READY"
        second = await _identify(fake, http, [1, 2])
        closed = await second.receive(timeout=5)
        assert closed.type == aiohttp.WSMsgType.CLOSE and second.close_code == 4005
        assert fake.gateway.refused_identifies == [[1, 2]]
        other = await _identify(fake, http, [0, 2])  # another shard is free
        assert (await _next_dispatch(other))["t"] == "READY"
        await first.close()
        await fake.wait_for(lambda: (1, 2) not in fake.gateway.shard_sessions(), 5, "first closed (1000: ended)")
        third = await _identify(fake, http, [1, 2])
        ready = await _next_dispatch(third)
        assert ready["t"] == "READY" and ready["d"]["shard"] == [1, 2] and len(ready["d"]["guilds"]) == 1
        for ws in (other, third):
            await ws.close()


@pytest.mark.parametrize("shard", [[2, 2], [0, 0], [-1, 2], "x"])
async def test_an_invalid_shard_is_closed_with_4010(fake: FakeDiscord, shard: Any) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _identify(fake, http, shard)
        closed = await ws.receive(timeout=5)
        assert closed.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4010
    assert fake.identify_count == 0
