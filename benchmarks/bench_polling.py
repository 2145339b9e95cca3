"""Target: at most 15 status requests (GET /v1/tasks/{id}) for a 10-minute job; with callbacks, completion
noticed within 1 s.

Part 1, simulated time. The real JobRunner (real Database, real VideoAPIClient, the production PollSchedule)
follows one job at a time against the simulator over loopback, but time is simulated: the simulator's clock
stands still (speed 0) and the runner's injected `sleep(s)` advances it by `s` at once, so a 60-minute job
takes well under a second. What is simulated: only the passage of time (the sleeps between polls and the
upstream's progress); every request is a real HTTP request to the simulator. Each job is 5 s pending plus
processing, so "10 minutes" means 600 s from submission to the upstream's completion. Counted: GET /v1/tasks
requests per job, and the delay between the upstream completing and the runner's poll that saw it.

Part 2, real time with callbacks. Short real jobs (0.2 s pending + 1.5 s processing) with the callback server
on 127.0.0.1 and the simulator POSTing its completion callback; the runner keeps the production schedule
(first poll after 5 s), so anything under 5 s was the callback's doing. Measured in real time.

    python benchmarks/bench_polling.py [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_POLLS_10_MIN = 15
TARGET_CALLBACK_S = 1.0
PENDING = 5.0


class QuietNotifier:
    """The runner's Notifier without Discord: status updates are dropped, files 'delivered' at once."""

    async def show_status(self, job, update) -> None:
        return None

    async def upload_limit(self, job) -> int:
        return 1 << 30

    async def deliver_file(self, job, video):
        from bot.jobs.notifier import Delivery

        return Delivery(None, "channel")

    async def deliver_link(self, job, url, expires_at):
        from bot.jobs.notifier import Delivery

        return Delivery(url, "link")

    async def announce_failure(self, job, message) -> None:
        return None


class CountingClient:
    """Wraps the API client: counts status reads per task and notes when each first saw `completed`."""

    def __init__(self, api, now) -> None:
        self._api, self._now = api, now
        self.reads: dict[str, int] = {}
        self.noticed: dict[str, float] = {}

    def __getattr__(self, name: str):
        return getattr(self._api, name)

    async def get_task(self, task_id: str):
        self.reads[task_id] = self.reads.get(task_id, 0) + 1
        task = await self._api.get_task(task_id)
        if task.is_terminal and task_id not in self.noticed:
            self.noticed[task_id] = self._now()
        return task


async def _services(tmp: Path, sim, clock):
    import aiohttp

    from bot.upstream.client import VideoAPIClient
    from storage.db import Database

    stack = contextlib.AsyncExitStack()
    session = await stack.enter_async_context(aiohttp.ClientSession())
    db = await Database.open(tmp / "bot.db", clock=clock)
    stack.push_async_callback(db.close)
    await db.guilds.update(1, **common.GENEROUS)
    api = CountingClient(VideoAPIClient(session, base_url=sim.base_url, api_key="sk-bench"), clock)
    return stack, db, api


async def _new_job(db, user_id: int):
    from storage.models import NewJob

    return await db.jobs.create_with_hold(NewJob(guild_id=1, channel_id=10, user_id=user_id, prompt="a fox",
                                                 duration=4, cost=100))


async def simulated(minutes: list[float]) -> list[dict]:
    from bot.jobs.runner import JobRunner, RunnerSettings
    from bot.simulator.app import Simulator

    rows = []
    with common.workdir("polling") as tmp:
        async with Simulator() as sim:
            sim.state.configure({"speed": 0})
            clock = sim.state.clock.now

            async def sleep(seconds: float) -> None:  # the only sleeper: jump the simulated clock
                sim.state.clock.advance(seconds)
                await asyncio.sleep(0)

            stack, db, api = await _services(tmp, sim, clock)
            async with stack:
                runner = JobRunner(db=db, api=api, notifier=QuietNotifier(),  # type: ignore[arg-type]
                                   settings=RunnerSettings(video_dir=tmp / "videos"), clock=clock, sleep=sleep)
                for i, length in enumerate(minutes):
                    sim.state.configure({"pending_seconds": PENDING, "processing_seconds": length * 60 - PENDING})
                    job = await _new_job(db, 100 + i)
                    runner.launch(job)  # not runner.start(): no health loop, so this job is the only sleeper
                    await runner.wait_idle(60)
                    job = await db.jobs.get(job.id)
                    assert job is not None and job.task_id is not None
                    task = sim.state.tasks[job.task_id]
                    rows.append({"job_minutes": length, "state": job.state, "status_requests": api.reads[job.task_id],
                                 "notice_delay_s": round(api.noticed[job.task_id] - (task.completed_at or 0), 1)})
                await runner.stop()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def with_callbacks(jobs: int) -> dict:
    from bot.callbacks import CallbackServer
    from bot.jobs.runner import JobRunner, RunnerSettings
    from bot.simulator.app import Simulator

    with common.workdir("callbacks") as tmp:
        async with Simulator() as sim:
            sim.state.configure({"pending_seconds": 0.2, "processing_seconds": 1.5})
            stack, db, api = await _services(tmp, sim, sim.state.clock.now)
            async with stack:
                port = _free_port()
                runner = JobRunner(db=db, api=api, notifier=QuietNotifier(),  # type: ignore[arg-type]
                                   settings=RunnerSettings(video_dir=tmp / "videos",
                                                           callback_base_url=f"http://127.0.0.1:{port}"))
                server = CallbackServer(db, runner, "127.0.0.1", port)
                await server.start()
                try:
                    created = [await _new_job(db, 200 + i) for i in range(jobs)]
                    for job in created:
                        runner.launch(job)
                    await runner.wait_idle(30)
                    delays, reads, states = [], [], []
                    for job in created:
                        row = await db.jobs.get(job.id)
                        assert row is not None and row.task_id is not None
                        task = sim.state.tasks[row.task_id]
                        states.append(row.state)
                        reads.append(api.reads[row.task_id])
                        delays.append(api.noticed[row.task_id] - (task.completed_at or 0))
                finally:
                    await runner.stop()
                    await server.stop()
    return {"jobs": jobs, "delivered": states.count("delivered"), "status_requests_max": max(reads),
            "notice_delay_ms": common.distribution(delays, 1000), "callbacks_sent": len(sim.state.callbacks)}


async def run(quick: bool) -> dict:
    minutes = [1, 10] if quick else [1, 5, 10, 30, 60]
    sim_rows = await simulated(minutes)
    cb = await with_callbacks(2 if quick else 10)
    ten = next((r for r in sim_rows if r["job_minutes"] == 10), None)
    return {
        "simulated": sim_rows,
        "callbacks": cb,
        "target_polls_10_min": TARGET_POLLS_10_MIN,
        "target_callback_s": TARGET_CALLBACK_S,
        "polling_target_met": ten is not None and ten["status_requests"] <= TARGET_POLLS_10_MIN,
        "callback_target_met": cb["notice_delay_ms"].get("max", 1e9) < TARGET_CALLBACK_S * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__ or "", argv)
    common.quiet_logs()
    r = asyncio.run(run(args.quick))
    print(common.table("Status requests per job (simulated clock, production PollSchedule, no callbacks)",
                       ["job length (min)", "GET /v1/tasks", "completion -> noticed (s)", "final state"],
                       [[x["job_minutes"], x["status_requests"], x["notice_delay_s"], x["state"]]
                        for x in r["simulated"]]))
    cb = r["callbacks"]
    d = cb["notice_delay_ms"]
    print()
    print(common.table("With callbacks (real time, 1.7 s jobs, first scheduled poll at 5 s)",
                       ["jobs", "delivered", "GET /v1/tasks max/job", "noticed p50 (ms)", "p99 (ms)", "max (ms)"],
                       [[cb["jobs"], cb["delivered"], cb["status_requests_max"], d["p50"], d["p99"], d["max"]]]))
    print(f"targets: <= {TARGET_POLLS_10_MIN} requests for 10 min -> {'met' if r['polling_target_met'] else 'MISSED'}; "
          f"callback noticed < {TARGET_CALLBACK_S:.0f} s -> {'met' if r['callback_target_met'] else 'MISSED'}")
    common.emit("polling", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
