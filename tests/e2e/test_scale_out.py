"""Several real bot processes on one PostgreSQL database and one local Discord (issue 14, items 5 and 7).

`python -m bot run` on shards 0 and 1 of 2 and `python -m bot worker` (no gateway): the local Discord routes
each guild's events to its shard's session as Discord does, so a command is answered by the process whose
shard holds the guild, and jobs go to whichever process claims them. Every wait is bounded and waits for a
condition (the database, the fake's records, /healthz); nothing sleeps and then asserts.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_discord import shard_of

from tests.e2e.harness import (
    MANAGE_GUILD,
    BotProcess,
    World,
    bot_messages,
    bot_processes,
    read_db,
    run_cli,
    shard_env,
    wait_db,
)

SHARDS = 2


@pytest.fixture
def backend() -> str:
    """Several processes share one database only on PostgreSQL (SQLite refuses a second process)."""
    return "postgresql"


def add_server(world: World, name: str, shard: int) -> tuple[Any, Any, Any]:
    """A guild on `shard` of SHARDS with #general and one member: (guild, channel, member)."""
    fake = world.fake
    guild = fake.add_guild(name, shard=(shard, SHARDS))
    channel = fake.add_channel(guild.id, "general")
    member = fake.add_user(f"{name}-member")
    fake.add_member(guild.id, member.id)
    admin = fake.add_user(f"{name}-admin")
    fake.add_member(guild.id, admin.id, permissions=MANAGE_GUILD)
    assert shard_of(guild.id, SHARDS) == shard
    return guild, channel, member


def interactions_on(world: World, shard: int) -> set[int]:
    """Ids of the interactions the fake dispatched to the session of `shard` (of SHARDS)."""
    session = world.fake.gateway.shard_sessions()[(shard, SHARDS)]
    return {int(d["id"]) for _, event, d in session.buffer if event == "INTERACTION_CREATE"}


async def test_two_shards_answer_their_own_guilds_and_a_worker_logs_in_without_a_gateway(world: World) -> None:
    servers = [add_server(world, f"s{i}", i % SHARDS) for i in range(4)]
    shard0 = BotProcess(world, "shard0", env=shard_env(0, SHARDS))
    shard1 = BotProcess(world, "shard1", env=shard_env(1, SHARDS))
    worker = BotProcess(world, "worker", verb="worker")
    identified = world.fake.identify_count
    async with bot_processes(shard0, shard1, worker):
        assert world.fake.identify_count == identified + 2  # one IDENTIFY per shard, none by the worker
        assert set(world.fake.gateway.shard_sessions()) == {(0, SHARDS), (1, SHARDS)}
        assert (await shard0.wait_health(200))["gateway"] == {"0": True}
        assert (await shard1.wait_health(200))["gateway"] == {"1": True}
        body = await worker.wait_health(200)
        assert "gateway" not in body and body["database"] == "ok"  # a worker has no gateway to report
        await world.fake.sync_wait_commands(timeout=20)

        inters = []
        for guild, channel, member in servers:
            inters.append((guild, await world.fake.slash(guild.id, channel.id, member.id, "sora generate",
                                                         options={"prompt": "a red fox in snow", "duration": 4})))
        for guild, inter in inters:
            await inter.wait_original(lambda m: not m.loading, timeout=20)
            assert inter.id in interactions_on(world, shard_of(guild.id, SHARDS))
            assert inter.id not in interactions_on(world, 1 - shard_of(guild.id, SHARDS))

        rows = await wait_db(world, "SELECT id, guild_id, state FROM jobs",
                             until=lambda r: len(r) == len(servers) and all(x["state"] == "delivered" for x in r),
                             timeout=60, what="every job delivered")
        assert {r["guild_id"] for r in rows} == {g.id for g, _, _ in servers}
        assert len(world.sim.state.requests_to("/v1/videos/generations", "POST")) == len(servers)
        for row in rows:
            kinds = [k["kind"] for k in read_db(world, "SELECT kind FROM ledger WHERE job_id = ? ORDER BY id",
                                                  (row["id"],))]
            assert kinds == ["hold", "charge"]
        videos = [m for m in bot_messages(world) if m.attachments]
        assert sorted(m.guild_id for m in videos) == sorted(g.id for g, _, _ in servers)
        assert (await worker.wait_health(200))["database"] == "ok"  # still healthy after the load


async def test_a_worker_refuses_to_run_on_sqlite_in_one_line(world: World) -> None:
    env = {k: v for k, v in world.env().items() if k != "DATABASE_URL"}
    code, out, err = await run_cli("worker", env=env, cwd=world.tmp)
    assert code == 2, (out, err)
    assert err.strip().count("\n") == 0 and "DATABASE_URL" in err and "PostgreSQL" in err, err
    assert world.fake.identify_count == 0 and not (world.tmp / "data").exists()
