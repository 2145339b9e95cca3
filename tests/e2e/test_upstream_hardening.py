"""The upstream boundary, where every create may bill the operator (issue 10, items 1–4), end to end.

A create whose answer is lost is recognised by its callback (never re-sent); a task that never finishes is given
up at JOB_TIMEOUT and refunded; a forged callback naming a task cannot be adopted without the upstream's word.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.harness import (
    InProcessBot,
    World,
    accepted,
    assert_settled,
    final_status,
    running_bot,
    video_posts,
)
from tests.helpers import fast_upstream, free_port

CREATES = "/v1/videos/generations"


def with_callbacks(world: World, **extra: str) -> None:
    port = free_port()
    world.extra_env.update({"CALLBACK_PUBLIC_URL": f"http://127.0.0.1:{port}", "CALLBACK_HOST": "127.0.0.1",
                            "CALLBACK_PORT": str(port), **extra})


@pytest.fixture
async def callback_bot(world: World) -> AsyncIterator[InProcessBot]:
    with_callbacks(world, **fast_upstream(timeout=0.5))
    async with running_bot(world) as runner:
        yield runner


@pytest.mark.allow_errors(r"^bot\.jobs\.runner: create (sent but its answer was lost|unconfirmed)")  # the lost answer is provoked
async def test_a_lost_create_answer_is_recognised_by_its_callback(world: World, callback_bot: InProcessBot) -> None:
    """The upstream made the task but the answer never came: its callback to the job's own URL names it."""
    bot = callback_bot
    world.sim.state.configure({"pending_seconds": 0.2, "processing_seconds": 0.5, "speed": 1.0})
    world.sim.state.inject("lost_answer", "create")
    inter = await world.generate()
    await accepted(inter)
    [job] = await bot.wait_finished(1)
    assert job.state == "delivered", (job.error_code, job.error_message)
    assert len(world.sim.state.requests_to(CREATES, "POST")) == 1  # never sent again
    assert len(world.sim.state.tasks) == 1 and job.task_id in world.sim.state.tasks
    assert len(video_posts(world, job.id)) == 1
    await final_status(world, job)
    await assert_settled(bot, world, job)
    print("RELIABILITY-FIGURES creates per job under a lost answer (callbacks configured): 1, delivered")


@pytest.mark.allow_errors(r"^bot\.jobs\.runner: create (sent but its answer was lost|unconfirmed)")  # the lost answer is provoked
async def test_a_forged_callback_cannot_make_a_lost_create_adopt_another_task(world: World) -> None:
    """A callback naming a task the upstream doesn't know is ignored; with no real callback the job is refunded."""
    with_callbacks(world, SORA_TIME_SCALE="0.001", **fast_upstream(timeout=0.5))  # the wait for a callback: 3.6 s
    async with running_bot(world) as bot:
        world.sim.state.inject("drop", "create")  # no task was made, so no real callback will ever come
        inter = await world.generate()
        await accepted(inter)
        job = await bot.wait_job(lambda j: j.state == "submitting" and j.create_inflight == 1, timeout=10)
        url = f"{world.extra_env['CALLBACK_PUBLIC_URL']}/callbacks/{job.callback_token}"
        forged = {"id": "made-up-task", "status": "completed"}
        headers = {"X-Task-Id": "made-up-task", "X-Event": "task.completed"}
        async with aiohttp.ClientSession() as session, session.post(url, json=forged, headers=headers) as resp:
            assert resp.status == 200
        [done] = await bot.wait_finished(1, timeout=30)
        assert done.state == "failed" and done.error_code == "create_unconfirmed"
        assert done.task_id is None
        assert world.sim.state.requests_to("/v1/tasks/made-up-task", "GET")  # asked the upstream, which said no
        assert len(world.sim.state.requests_to(CREATES, "POST")) == 1
        await assert_settled(bot, world, done)


async def test_a_task_that_never_finishes_is_refunded_at_job_timeout(world: World) -> None:
    """Processing for ever: at JOB_TIMEOUT the member is refunded and told, and polling stops."""
    world.extra_env["JOB_TIMEOUT"] = "2"
    world.sim.state.configure({"processing_seconds": 10**6})
    async with running_bot(world) as bot:
        inter = await world.generate()
        await accepted(inter)
        [job] = await bot.wait_finished(1, timeout=30)
        assert job.state == "failed" and job.error_code == "job_timeout", job.error_code
        status = await final_status(world, job, "refunded")
        assert "in time" in status.content
        await assert_settled(bot, world, job)
        def reads_of_the_stuck_task() -> int:
            return len(world.sim.state.requests_to(f"/v1/tasks/{job.task_id}", "GET"))

        polled = reads_of_the_stuck_task()
        assert polled >= 1
        # Another job through the same bot, start to finish, gives a still-running follower every chance to poll.
        await bot.db.guilds.update(world.guild.id, cooldown_seconds=0)
        world.sim.state.configure({"processing_seconds": 0.1})
        await accepted(await world.generate())
        [_, second] = await bot.wait_finished(2, timeout=30)
        assert second.state == "delivered"
        assert reads_of_the_stuck_task() == polled  # polling of the given-up task stopped


async def test_the_bound_on_creates_holds_across_a_restart(world: World) -> None:
    """A lasting 500 and a kill -9 after three creates: the restarted bot sends only the three left (six in all)."""
    from tests.e2e.harness import start_subprocess
    from tests.e2e.test_crash import accepted as accepted_in
    from tests.e2e.test_crash import kill_and_restart, prepare, settle_and_audit

    world.extra_env["SORA_TIME_SCALE"] = "0.3"  # waits between creates of 0.6 s, 1.2 s, 2.4 s, ...
    await prepare(world, [world.member])
    world.sim.state.inject("internal_error", "create", count=1000)
    bot = await start_subprocess(world)
    await accepted_in(world, world.member)
    await world.fake.wait_for(lambda: len(world.sim.state.requests_to(CREATES, "POST")) >= 3, recheck=0.02,
                              timeout=20, what="three creates refused")
    bot = await kill_and_restart(bot, world)
    outcome = await settle_and_audit(world, bot, [world.member], 1)
    assert outcome.failed == 1
    assert len(world.sim.state.requests_to(CREATES, "POST")) == 6
