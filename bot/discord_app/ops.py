"""What `/healthz` and `/metrics` read from the Discord side: gateway state per shard, the database, the upstream.

discord.py reports connection changes as events (connect, disconnect, resumed, and their per-shard forms), so
the bot keeps a small table of which shard is connected; a shard this process never connected counts as down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.ops.server import Health

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0


class GatewayState:
    """Which of this process's shards are connected right now (0 for an unsharded client)."""

    def __init__(self) -> None:
        self.connected: dict[int, bool] = {}

    def up(self, shard: int | None) -> None:
        self.connected[shard or 0] = True

    def down(self, shard: int | None) -> None:
        self.connected[shard or 0] = False


async def probe(bot: SoraBot) -> Health:
    """The health checks: gateway shards (when this process has a gateway), database, upstream intake."""
    problems: list[str] = []
    details: dict[str, object] = {}
    if bot.has_gateway:
        shards = bot.gateway_state.connected
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
