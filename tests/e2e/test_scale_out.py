"""Several real bot processes on one PostgreSQL database and one local Discord (issue 14, items 5 and 7).

`python -m bot run` on shards 0 and 1 of 2 and `python -m bot worker` (no gateway): the local Discord routes
each guild's events to its shard's session as Discord does, so a command is answered by the process whose
shard holds the guild, and jobs go to whichever process claims them. Every wait is bounded and waits for a
condition (the database, the fake's records, /healthz); nothing sleeps and then asserts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fake_discord import shard_of

from tests.e2e.harness import (
    MANAGE_GUILD,
    BotProcess,
    World,
    bot_messages,
    bot_processes,
    open_db,
    read_db,
    run_cli,
    shard_env,
    video_posts,
    wait_db,
)

SHARDS = 2
LEASE = 2.0  # JOB_LEASE_SECONDS of every process here: failovers take seconds, not the default 30
UNFINISHED = "state NOT IN ('delivered', 'failed')"


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


# ---- failover and fencing (the claim loop of storage/leases.py and bot/jobs/claims.py) -------------------------


def three_processes(world: World) -> tuple[BotProcess, BotProcess, BotProcess]:
    world.extra_env["JOB_LEASE_SECONDS"] = f"{LEASE:g}"
    return (BotProcess(world, "shard0", env=shard_env(0, SHARDS)), BotProcess(world, "shard1", env=shard_env(1, SHARDS)),
            BotProcess(world, "worker", verb="worker"))


def job_row(world: World, job_id: str) -> dict[str, Any]:
    [row] = read_db(world, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    return dict(row)


def ledger_of(world: World, job_id: str) -> list[str]:
    return [r["kind"] for r in read_db(world, "SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))]


async def held_job(world: World, server: tuple[Any, Any, Any]) -> dict[str, Any]:
    """A job accepted through the server's shard, rendering for a long time, with an owner: its row."""
    guild, channel, member = server
    inter = await world.fake.slash(guild.id, channel.id, member.id, "sora generate",
                                   options={"prompt": "a red fox in snow", "duration": 4})
    await inter.wait_original(lambda m: not m.loading, timeout=20)
    [row] = await wait_db(world, f"SELECT * FROM jobs WHERE state = 'running' AND owner IS NOT NULL AND {UNFINISHED}",
                          timeout=30, what="the job rendering, owned")
    return dict(row)


def driver(procs: tuple[BotProcess, ...], owner: str) -> BotProcess:
    return next(p for p in procs if p.owns(owner))


async def test_kill_9_of_the_driving_process_another_delivers_once_within_a_lease(world: World) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    server = add_server(world, "s0", 0)
    procs = three_processes(world)
    async with bot_processes(*procs):
        await world.fake.sync_wait_commands(timeout=20)
        job = await held_job(world, server)
        victim = driver(procs, job["owner"])
        victim.kill9()
        killed = time.monotonic()
        assert victim.proc is not None
        await asyncio.wait_for(victim.proc.wait(), 10)
        [row] = await wait_db(world, "SELECT owner, fence, state FROM jobs WHERE id = ?", (job["id"],),
                              until=lambda r: bool(r) and r[0]["owner"] is not None and not victim.owns(r[0]["owner"]),
                              timeout=LEASE * 6 + 10, what="another process owning the job")
        took = time.monotonic() - killed
        assert took < LEASE * 4 + 3, f"taken over after {took:.1f} s (lease {LEASE} s)"
        assert row["fence"] > job["fence"] and row["state"] == "running"
        world.sim.state.clock.advance(2000)  # the render ends: the new owner notices on its next poll
        await wait_db(world, "SELECT state FROM jobs WHERE id = ?", (job["id"],),
                      until=lambda r: r[0]["state"] == "delivered", timeout=30, what="delivered by the new owner")
        assert ledger_of(world, job["id"]) == ["hold", "charge"]
        assert len(world.sim.state.requests_to("/v1/videos/generations", "POST")) == 1  # the same task, polled
        assert len(video_posts(world, job["id"])) == 1
        async with open_db(world) as db:
            assert await db.ledger.verify() == []


async def test_a_paused_process_writes_nothing_after_it_wakes_past_its_lease(world: World) -> None:
    """SIGSTOP the driver past its lease: another process takes the job over and delivers it; SIGCONT: the woken
    process renews (its heartbeat moves) and learns the lease is gone, and writes nothing about the job — no
    post, no edit, no ledger entry, no change to the row, no upstream create."""
    world.sim.state.configure({"processing_seconds": 1000})
    server = add_server(world, "s1", 1)
    procs = three_processes(world)
    async with bot_processes(*procs):
        await world.fake.sync_wait_commands(timeout=20)
        job = await held_job(world, server)
        sleeper = driver(procs, job["owner"])
        sleeper.pause()
        await wait_db(world, "SELECT owner FROM jobs WHERE id = ?", (job["id"],),
                      until=lambda r: r[0]["owner"] is not None and not sleeper.owns(r[0]["owner"]),
                      timeout=LEASE * 6 + 10, what="another process owning the job")
        world.sim.state.clock.advance(2000)
        await wait_db(world, "SELECT state FROM jobs WHERE id = ?", (job["id"],),
                      until=lambda r: r[0]["state"] == "delivered", timeout=30, what="delivered by the new owner")
        status_id = job_row(world, job["id"])["status_message_id"]
        await world.fake.wait_for(lambda: "Done" in (getattr(world.fake.message(status_id), "content", "") or ""),
                                  timeout=10, what="the status message's final edit")
        row_before, ledger_before = job_row(world, job["id"]), ledger_of(world, job["id"])
        requests_before = len(world.fake.requests)
        creates_before = len(world.sim.state.requests_to("/v1/videos/generations", "POST"))
        [beat] = read_db(world, "SELECT heartbeat_at FROM processes WHERE name = ?", (job["owner"],)) or [None]
        sleeper.resume()
        last = beat["heartbeat_at"] if beat is not None else 0.0
        for _ in range(2):  # two heartbeats after waking: at least one whole renewal pass ran and lost the lease
            [beat] = await wait_db(world, "SELECT heartbeat_at FROM processes WHERE name = ?", (job["owner"],),
                                   until=lambda r, last=last: bool(r) and r[0]["heartbeat_at"] > last,
                                   timeout=LEASE * 4 + 10, what="the woken process's heartbeat")
            last = beat["heartbeat_at"]
        assert (await sleeper.wait_health(200))["database"] == "ok"  # awake and well, only quiet about the job
        assert job_row(world, job["id"]) == row_before
        assert ledger_of(world, job["id"]) == ledger_before == ["hold", "charge"]
        assert len(world.sim.state.requests_to("/v1/videos/generations", "POST")) == creates_before == 1
        writes = [r for r in world.fake.requests[requests_before:] if r.method in ("POST", "PATCH", "DELETE")]
        assert writes == [], [f"{r.method} {r.path}" for r in writes]
        assert len(video_posts(world, job["id"])) == 1


async def test_limits_hold_with_jobs_arriving_at_every_process_at_once(world: World) -> None:
    """MAX_RUNNING_JOBS=3 bot-wide and 2 per server, 12 commands at once through both shards: sampled every
    20 ms, the database never shows more jobs past the queue than that, and the upstream never more tasks in
    flight; the limits are reached (the test is not vacuous); every job delivered once."""
    world.sim.state.configure({"processing_seconds": 1.0})
    world.extra_env["MAX_RUNNING_JOBS"] = "3"
    servers = [add_server(world, f"s{i}", i % SHARDS) for i in range(3)]
    members = {g.id: [m, *(world.fake.add_user(f"{g.name}-m{k}") for k in range(3))] for g, _, m in servers}
    for guild, _, _ in servers:
        for user in members[guild.id][1:]:
            world.fake.add_member(guild.id, user.id)
    async with open_db(world) as db:
        for guild, _, _ in servers:
            await db.guilds.update(guild.id, max_jobs_per_guild=2, cooldown_seconds=0)
    procs = three_processes(world)
    async with bot_processes(*procs):
        await world.fake.sync_wait_commands(timeout=20)
        peak_total, peak_guild = 0, 0
        sampling = True

        async def sample() -> None:
            nonlocal peak_total, peak_guild
            while sampling:
                rows = read_db(world, "SELECT guild_id, COUNT(*) AS n FROM jobs WHERE state IN "
                                      "('submitting', 'running', 'completed') GROUP BY guild_id")
                peak_total = max(peak_total, sum(int(r["n"]) for r in rows))
                peak_guild = max([peak_guild, *(int(r["n"]) for r in rows)])
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(world.fake.slash(g.id, c.id, u.id, "sora generate",
                                                    options={"prompt": "a red fox in snow", "duration": 4})
                                   for g, c, _ in servers for u in members[g.id]))
            rows = await wait_db(world, "SELECT id, state FROM jobs",
                                 until=lambda r: len(r) == 12 and all(x["state"] == "delivered" for x in r),
                                 timeout=120, what="all 12 jobs delivered")
        finally:
            sampling = False
            await sampler
        assert peak_total == 3 and peak_guild == 2, (peak_total, peak_guild)
        assert len(world.sim.state.requests_to("/v1/videos/generations", "POST")) == 12
        for row in rows:
            assert ledger_of(world, row["id"]) == ["hold", "charge"]
            assert len(video_posts(world, row["id"])) == 1
