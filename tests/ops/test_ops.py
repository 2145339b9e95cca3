"""The operations server and Sentry reporting on their own: real HTTP scrapes, a real sentry-sdk client sending
to a local stand-in of Sentry's endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import sentry_sdk
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.metrics import Metrics
from bot.ops.sentry import init_sentry
from bot.ops.server import Health, OpsServer
from tests.helpers import free_port
from tests.ops.sentry_standin import sentry_standin


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition, or None."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_metrics_are_served_as_prometheus_text_and_move_with_events() -> None:
    metrics = Metrics(process="p1")
    health = Health({"database": "ok"})

    async def probe() -> Health:
        return health

    async def refresh() -> None:
        metrics.set_jobs({"running": 2, "queued": 1}, queued=1, driven=2)

    server = OpsServer(metrics, probe, refresh, "127.0.0.1", free_port())
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, text = await get(base + "/metrics")
        assert status == 200
        assert sample(text, "sora_jobs", process="p1", state="running") == 2
        assert sample(text, "sora_credits_total", process="p1", kind="charged") == 0
        metrics.credits_moved("charged", 100)
        metrics.delivered("channel")
        metrics.upstream_call("create", 0.2, "internal_error")
        _, text = await get(base + "/metrics")
        assert sample(text, "sora_credits_total", process="p1", kind="charged") == 100
        assert sample(text, "sora_deliveries_total", process="p1", path="channel") == 1
        assert sample(text, "sora_upstream_errors_total", process="p1", endpoint="create", code="internal_error") == 1
        assert sample(text, "sora_upstream_request_seconds_count", process="p1", endpoint="create") == 1
    finally:
        await server.stop()


async def test_healthz_is_200_when_healthy_and_503_naming_the_problem() -> None:
    state: dict[str, Health] = {"now": Health({"database": "ok"})}

    async def probe() -> Health:
        return state["now"]

    async def refresh() -> None:
        return None

    server = OpsServer(Metrics(process="p"), probe, refresh, "127.0.0.1", free_port())
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        status, body = await get(url)
        assert status == 200 and '"ok": true' in body
        state["now"] = Health({"database": "unreachable"}, ("database is not answering",))
        status, body = await get(url)
        assert status == 503 and "database is not answering" in body
    finally:
        await server.stop()


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.02)
    return value


async def test_a_logged_crash_reaches_sentry_tagged_with_its_job_and_scrubbed() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.discord-token-value.abcdefghijklmnop"
    async with sentry_standin() as sentry:
        init_sentry(sentry.dsn, secrets=[token, "sk-live-operator-key"], process="test-proc")
        try:
            log = logging.getLogger("bot.jobs.runner")
            try:
                raise RuntimeError(f"boom with {token} and sk-live-operator-key and "
                                   "/webhooks/123/aW50ZXJhY3Rpb24tdG9rZW4tdGhhdC1pcy1sb25n")
            except RuntimeError:
                log.exception("job crashed; refunding", extra={"job": "abc123", "guild": 42})
            sentry_sdk.flush(5)
            [event] = await wait_for(lambda: sentry.events)
        finally:
            sentry_sdk.get_client().close()
    assert event["tags"]["job"] == "abc123" and event["tags"]["guild"] == "42"
    assert event["server_name"] == "test-proc"
    raw = b"".join(sentry.raw).decode()
    assert "RuntimeError" in raw
    assert token not in raw and "sk-live-operator-key" not in raw
    assert "aW50ZXJhY3Rpb24tdG9rZW4tdGhhdC1pcy1sb25n" not in raw
