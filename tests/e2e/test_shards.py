"""One bot process holding several shards (SHARD_COUNT without SHARD_IDS): every shard connected at once within
Discord's IDENTIFY concurrency, /healthz keeping one row per shard, commands answered on any shard."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from fake_discord import shard_of

from bot.discord_app.ops import IdentifyGate
from tests.e2e.harness import World, accepted, running_bot
from tests.helpers import free_port


async def healthz(port: int, want: int, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                if resp.status == want:
                    return dict(json.loads(await resp.text()))
            await asyncio.sleep(0.05)


@pytest.mark.allow_errors(r"^discord\.shard: Attempting a reconnect")  # the outage of shard 1 we cause
async def test_one_process_holds_every_shard_and_healthz_follows_each(world: World) -> None:
    port = free_port()
    world.extra_env.update(SHARD_COUNT="2", METRICS_PORT=str(port))
    other = world.fake.add_guild("other shard", shard=(1 - shard_of(world.guild.id, 2), 2))
    async with running_bot(world) as bot:
        assert bot.bot is not None
        assert set(world.fake.gateway.shard_sessions()) == {(0, 2), (1, 2)}
        assert bot.bot.get_guild(world.guild.id) is not None and bot.bot.get_guild(other.id) is not None
        assert bot.bot.identify_gate.max_concurrency == world.fake.gateway.max_concurrency  # no 5 s between
        assert (await healthz(port, 200))["gateway"] == {"0": True, "1": True}

        gateway = world.fake.gateway
        session = gateway.shard_sessions()[(1, 2)]
        assert session.ws is not None
        gateway.refusing = True  # shard 1 loses its connection and cannot come back yet; shard 0 stays
        gateway._dropped.add(session.ws)
        await session.ws.close(code=4000)
        down = await healthz(port, 503)
        assert down["gateway"] == {"0": True, "1": False} and "gateway shard(s) 1 disconnected" in down["problems"]
        gateway.refusing = False
        assert (await healthz(port, 200))["gateway"] == {"0": True, "1": True}
        await accepted(await world.generate(duration=4))  # commands still answered


async def test_identify_gate_spaces_one_bucket_and_not_the_others() -> None:
    """Discord: one IDENTIFY per interval per bucket `shard_id % max_concurrency`."""
    async def limits() -> Any:
        return type("Limits", (), {"max_concurrency": 2})()

    gate = IdentifyGate(interval=0.3)
    loop = asyncio.get_running_loop()
    started: dict[int, float] = {}

    async def identify(shard: int) -> None:
        await gate.wait(shard, limits)
        started[shard] = loop.time()

    t0 = loop.time()
    await asyncio.gather(*(identify(s) for s in range(4)))  # buckets: 0 → shards 0, 2; 1 → shards 1, 3
    assert gate.max_concurrency == 2
    assert started[0] - t0 < 0.2 and started[1] - t0 < 0.2  # the first of each bucket at once
    assert started[2] - started[0] >= 0.29 and started[3] - started[1] >= 0.29  # the second waits its turn
