"""Operations end to end: `/metrics` scraped over HTTP while a real job runs, `/healthz` following the gateway,
and Sentry receiving a scrubbed event for an injected crash of the real bot process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import World, accepted, running_bot, start_subprocess
from tests.helpers import free_port
from tests.ops.sentry_standin import sentry_standin
from tests.ops.test_ops import sample
from tests.pgserver import find_bin_dir, running_server


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def values(text: str) -> dict[str, float]:
    """The samples a held → charged job moves, by a short name."""
    def get(name: str, **labels: str) -> float:
        return sample(text, name, **labels) or 0.0

    return {
        "held": get("sora_credits_total", kind="held"),
        "charged": get("sora_credits_total", kind="charged"),
        "released": get("sora_credits_total", kind="released"),
        "delivered_jobs": get("sora_jobs", state="delivered"),
        "finished_delivered": get("sora_jobs_finished_total", outcome="delivered", code="none"),
        "deliveries": sum(get("sora_deliveries_total", path=p) for p in ("interaction", "channel", "dm", "link")),
        "creates": get("sora_upstream_request_seconds_count", endpoint="create"),
    }


async def test_metrics_move_by_exactly_one_jobs_worth(world: World) -> None:
    port = free_port()
    world.extra_env["METRICS_PORT"] = str(port)
    async with running_bot(world) as bot:
        status, before_text = await scrape(port)
        assert status == 200
        before = values(before_text)
        await accepted(await world.generate(duration=4))
        [job] = await bot.wait_finished(1)
        assert job.state == "delivered"
        _, after_text = await scrape(port)
    after = values(after_text)
    moved = {k: after[k] - before[k] for k in before}
    assert moved == {"held": 100, "charged": 100, "released": 0, "delivered_jobs": 1, "finished_delivered": 1,
                     "deliveries": 1, "creates": 1}, moved
    assert "sora_event_loop_lag_seconds_count" in after_text
    assert world.member.name not in after_text and job.id not in after_text  # no user text or ids in labels


async def wait_health(port: int, want: int, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await scrape(port, "/healthz")
            if status == want:
                return dict(json.loads(body))
            await asyncio.sleep(0.05)


@pytest.mark.allow_errors(r".")  # a database outage makes the bot log errors; the point is /healthz
async def test_healthz_turns_503_while_postgresql_is_down_and_200_again_after(world: World) -> None:
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    port = free_port()
    with running_server() as server:
        world.database_url = server.url("postgres")
        world.extra_env["METRICS_PORT"] = str(port)
        async with running_bot(world):
            assert (await wait_health(port, 200))["database"] == "ok"
            await asyncio.to_thread(server.halt)
            down = await wait_health(port, 503)
            assert down["database"] == "unreachable", down
            await asyncio.to_thread(server.resume)
            back = await wait_health(port, 200, timeout=30)
            assert back["database"] == "ok"


@pytest.mark.allow_errors(r"^discord\.(client|shard): Attempting a reconnect",  # the gateway outage we cause
                          r"^bot\.jobs\.claims: giving back leases failed")  # at shutdown: the database we closed
async def test_healthz_follows_the_gateway_and_the_database(world: World) -> None:
    port = free_port()
    world.extra_env["METRICS_PORT"] = str(port)
    async with running_bot(world) as bot:
        healthy = await wait_health(port, 200)
        assert healthy["gateway"] == {"0": True} and healthy["database"] == "ok"
        assert healthy["upstream"]["accepting"] is True
        await world.fake.drop_gateway(stay_down=True)
        down = await wait_health(port, 503)
        assert any("gateway" in p for p in down["problems"]), down
        world.fake.restore_gateway()
        again = await wait_health(port, 200)
        assert again["gateway"] == {"0": True}
        await bot.db.close()  # the database goes away
        gone = await wait_health(port, 503)
        assert any("database" in p for p in gone["problems"]), gone


@pytest.mark.allow_errors(r"status update failed")
async def test_an_injected_crash_reaches_sentry_tagged_and_scrubbed(world: World) -> None:
    """The real `python -m bot run` with SENTRY_DSN: Discord answers a status post with garbage, the bot logs the
    crash, and the stand-in receives one event tagged with the job, holding neither token nor key."""
    async with sentry_standin() as sentry:
        world.extra_env["SENTRY_DSN"] = sentry.dsn
        world.fake.fail_next("POST", r"^/channels/\d+/messages$", status=200, message="not a message")
        bot = await start_subprocess(world)
        try:
            await accepted(await world.generate())
            await world.fake.wait_for(lambda: sentry.events, timeout=30, what="an event reached the stand-in")
        finally:
            await bot.terminate()
    [event] = [e for e in sentry.events if "status update failed" in json.dumps(e)][:1]
    assert len(event["tags"]["job"]) == 32
    raw = b"".join(sentry.raw).decode()
    env = world.env()
    assert world.fake.token not in raw and env["SORA_API_KEY"] not in raw
