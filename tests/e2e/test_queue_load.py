"""The queue: jobs beyond the server's limit wait their turn (first come, first served) and show their place; and
100 members at once are all acknowledged within Discord's deadline, delivered, and charged exactly once."""

from __future__ import annotations

import asyncio
import itertools

from tests.e2e.harness import InProcessBot, World, accepted, assert_settled, status_message, video_posts

CREATES = "/v1/videos/generations"


async def test_one_slot_runs_three_jobs_one_at_a_time_in_order(world: World, bot: InProcessBot) -> None:
    await bot.db.guilds.update(world.guild.id, max_jobs_per_guild=1)
    third = world.fake.add_user("third")
    world.fake.add_member(world.guild.id, third.id)
    people = [world.member, world.other, third]
    world.sim.state.configure({"processing_seconds": 1000})  # the first job holds the only slot
    for n, user in enumerate(people):
        await accepted(await world.generate(user=user, prompt=f"job number {n}"))

    first = await bot.wait_job(lambda j: j.prompt == "job number 0" and j.state == "running")
    jobs = [first, *[await bot.wait_job(lambda j, n=n: j.prompt == f"job number {n}" and j.status_message_id is not None)
                     for n in (1, 2)]]
    for job, place in ((jobs[1], 1), (jobs[2], 2)):
        assert job.state == "queued"
        status = status_message(world, job)
        assert f"#{place} in the queue" in status.content, status.content
    assert len(world.sim.state.requests_to(CREATES, "POST")) == 1  # waiting jobs cost the upstream nothing

    world.sim.state.configure({"processing_seconds": 0.2})  # the next ones render quickly
    world.sim.state.clock.advance(1000)
    done = await bot.wait_finished(3)
    assert [j.state for j in done] == ["delivered"] * 3
    assert [j.user_id for j in sorted(done, key=lambda j: j.finished_at or 0)] == [u.id for u in people]
    creates = world.sim.state.requests_to(CREATES, "POST")
    assert [c.json["input"]["prompt"] for c in creates] == [f"job number {n}" for n in range(3)]
    tasks = sorted(world.sim.state.tasks.values(), key=lambda t: t.created)
    for before, after in itertools.pairwise(tasks):
        assert before.completed_at is not None and after.created >= before.completed_at  # never two at once
    for job, user in zip(done, people, strict=True):
        await assert_settled(bot, world, job, user)


async def test_a_hundred_members_at_once(world: World, bot: InProcessBot) -> None:
    await bot.db.guilds.update(world.guild.id, max_jobs_per_guild=20)
    users = []
    for n in range(100):
        user = world.fake.add_user(f"crowd{n}")
        world.fake.add_member(world.guild.id, user.id)
        users.append(user)
    interactions = await asyncio.gather(*(world.generate(user=u, prompt=f"crowd video {n}")
                                          for n, u in enumerate(users)))
    responses = await asyncio.gather(*(i.wait_response(3) for i in interactions))
    assert all(r.type == 5 and r.data["flags"] & 64 for r in responses)
    # The local Discord refuses a callback later than 3 s (10062), as Discord does: none was refused.
    assert not any(i.rejected_callbacks for i in interactions)
    latencies = sorted(i.response_latency for i in interactions)  # a figure for the report, not a bound
    answers = await asyncio.gather(*(accepted(i, timeout=30) for i in interactions))
    assert len(answers) == 100

    done = await bot.wait_finished(100, timeout=60)
    assert [j.state for j in done] == ["delivered"] * 100, {j.error_code for j in done}
    charges = await bot.db.fetchall(
        "SELECT job_id, COUNT(*) AS n FROM ledger WHERE kind = 'charge' GROUP BY job_id")
    assert len(charges) == 100 and {r["n"] for r in charges} == {1}
    assert len(world.sim.state.tasks) == 100
    assert all(len(video_posts(world, j.id)) == 1 for j in done)
    by_user = {u.id: u for u in users}
    for job in done:
        await assert_settled(bot, world, job, by_user[job.user_id])
    print(f"QUEUE-FIGURES 100 members: slowest ack {latencies[-1]:.3f} s, median {latencies[50]:.3f} s")
