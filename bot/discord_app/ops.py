"""What `/healthz` and `/metrics` read from the Discord side: gateway state per shard, the database, the upstream.

discord.py reports connection changes as events (connect, disconnect, resumed, and their per-shard forms), so
the bot keeps a small table of which shard is connected; a shard this process never connected counts as down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.ops.server import Health

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0
IDENTIFY_INTERVAL = 5.0  # Discord: one IDENTIFY per 5 s per concurrency bucket


class GatewayState:
    """Which of this process's shards are connected right now (0 for an unsharded client)."""

    def __init__(self) -> None:
        self.connected: dict[int, bool] = {}

    def up(self, shard: int | None) -> None:
        self.connected[shard or 0] = True

    def down(self, shard: int | None) -> None:
        self.connected[shard or 0] = False

    def table(self, expected: list[int]) -> dict[int, bool]:
        """Every shard this process holds or should hold: one it never connected counts as down."""
        return {**dict.fromkeys(expected, False), **self.connected}


class IdentifyGate:
    """Discord's IDENTIFY rate limit: shards in one bucket (`shard_id % max_concurrency`) start 5 s apart,
    shards in different buckets at once. `max_concurrency` comes from `GET /gateway/bot` the first time; if that
    cannot be read, 1 (the strictest: every shard 5 s after the previous one, as discord.py does by default)."""

    def __init__(self, interval: float = IDENTIFY_INTERVAL) -> None:
        self.interval = interval
        self.max_concurrency: int | None = None
        self._next: dict[int, float] = {}  # bucket -> earliest loop time of its next IDENTIFY

    async def wait(self, shard_id: int, limits: Callable[[], Awaitable[Any]]) -> None:
        if self.max_concurrency is None:
            try:
                self.max_concurrency = max(1, int((await limits()).max_concurrency))
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
                log.warning("could not read the IDENTIFY concurrency; starting shards 5 s apart")
                self.max_concurrency = 1
        bucket = shard_id % self.max_concurrency
        now = asyncio.get_running_loop().time()
        at = max(now, self._next.get(bucket, now))
        self._next[bucket] = at + self.interval  # reserved before sleeping: shards of one bucket queue up
        if at > now:
            log.info("waiting to identify", extra={"shard": shard_id, "seconds": round(at - now, 2)})
            await asyncio.sleep(at - now)


async def probe(bot: SoraBot) -> Health:
    """The health checks: gateway shards (when this process has a gateway), database, upstream intake."""
    problems: list[str] = []
    details: dict[str, object] = {}
    if bot.has_gateway:
        shards = bot.gateway_state.table(bot.expected_shards())
        details["gateway"] = {str(k): v for k, v in sorted(shards.items())}
        down = [str(k) for k, v in sorted(shards.items()) if not v]
        if not shards:
            problems.append("gateway not connected yet")
        elif down:
            problems.append(f"gateway shard(s) {', '.join(down)} disconnected")
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            await bot.db.ping()
        details["database"] = "ok"
    except Exception as exc:
        details["database"] = "unreachable"
        problems.append(f"database not answering ({type(exc).__name__})")
    runner = bot.runner
    if runner is not None:
        health = runner.health
        details["upstream"] = {"accepting": health.accepting, "paused": health.paused_reason}
        details["jobs_driven"] = runner.driven
    return Health(details, tuple(problems))


async def refresh(bot: SoraBot) -> None:
    """Bring the database-read gauges and the gateway latencies up to date before a scrape."""
    metrics = bot.services.metrics
    by_state = await bot.db.jobs.count_by_state()
    metrics.set_jobs(by_state, queued=by_state.get("queued", 0), driven=bot.runner.driven if bot.runner else 0)
    if bot.has_gateway:
        metrics.gateway(bot.shard_latencies())
