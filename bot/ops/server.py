"""`/metrics` and `/healthz` on their own small aiohttp app, so a scrape never waits on Discord or the upstream.

`/healthz` answers 200 with a JSON body when every check passes and 503 naming what failed: container health
checks and load balancers read the status, people read the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Health:
    """The outcome of the health checks: `problems` empty means healthy."""

    details: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


Probe = Callable[[], Awaitable[Health]]
Refresh = Callable[[], Awaitable[None]]


class OpsServer:
    """Serve the process's metrics and health on host:port for the life of the bot."""

    def __init__(self, metrics: Metrics, probe: Probe, refresh: Refresh, host: str, port: int) -> None:
        self.metrics, self.probe, self.refresh = metrics, probe, refresh
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("metrics and health listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.refresh()
        except Exception:  # the counters are still worth serving when the database is away
            log.warning("metrics refresh from the database failed", exc_info=True)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                health = await self.probe()
        except Exception as exc:
            health = Health({}, (f"health check failed: {type(exc).__name__}",))
        body = {"ok": health.ok, "problems": list(health.problems), **health.details}
        return web.json_response(body, status=200 if health.ok else 503)
