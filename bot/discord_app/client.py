"""The Discord client: wires the injected services, the job runner and its Discord notifier, loads the cogs.

Always an `AutoShardedBot`: with SHARD_COUNT/SHARD_IDS it connects only those shards (Discord routes each
guild's events to shard `(guild_id >> 22) % SHARD_COUNT`, so another process serves the rest); without them it
asks Discord how many shards to run and connects them all, one process as before. `gateway=False` is the
worker: it logs in over REST, drives jobs and posts, and never connects a shard or handles a command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import discord
import yarl
from discord.ext import commands

from bot.callbacks import CallbackServer
from bot.config import Settings
from bot.discord_app import ops
from bot.discord_app.command_sync import sync_if_changed
from bot.discord_app.notifier import DiscordNotifier
from bot.discord_app.ops import GatewayState, IdentifyGate
from bot.discord_app.tree import SoraTree
from bot.jobs.claims import hold_database
from bot.jobs.runner import JobRunner
from bot.jobs.settings import RunnerSettings
from bot.ops.lag import watch_loop_lag
from bot.ops.server import OpsServer
from bot.services import Services
from bot.upstream.retry import PollSchedule

log = logging.getLogger(__name__)

COGS = ("cogs.sora", "cogs.admin")
GUILD_READY_TIMEOUT = 2.0  # seconds discord.py waits after the last GUILD_CREATE before on_ready (its default)


class SoraBot(commands.AutoShardedBot):
    """The bot: owns the job runner and callback server; everything else is injected."""

    def __init__(self, services: Services, *, sync_on_start: bool = True, start_jobs: bool = True,
                 guild_ready_timeout: float = GUILD_READY_TIMEOUT, clock: Callable[[], float] = time.time,
                 gateway: bool = True) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        settings = services.settings
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=SoraTree,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            guild_ready_timeout=guild_ready_timeout,  # tests shorten it: their guilds all arrive at once
            shard_count=settings.shard_count,
        )
        if settings.shard_ids is not None:  # only these shards (config checked them against the count)
            self.shard_ids = list(settings.shard_ids)
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.api = services.api
        self.sync_on_start = sync_on_start
        self.start_jobs = start_jobs
        self.runner: JobRunner | None = None
        self.notifier: DiscordNotifier | None = None
        self.clock = clock  # what the notifier judges interaction tokens' age by (Discord's clock in tests)
        self._callbacks: CallbackServer | None = None
        self._ops: OpsServer | None = None
        self._lag: asyncio.Task[None] | None = None
        self.gateway_state = GatewayState()
        self.has_gateway = gateway  # False: a worker (REST only); /healthz then has no gateway section
        self.identify_gate = IdentifyGate()
        self._release_database: Callable[[], None] | None = None

    @property
    def tree(self) -> SoraTree:
        """The command tree as the class passed to discord.py (`tree_cls`), so its `report()` is visible."""
        tree = super().tree
        assert isinstance(tree, SoraTree)
        return tree

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        """Hold the database for jobs before anything connects (SQLite: one process per file; a second one ends
        here in one line, ConfigError), then log in and connect as discord.py does."""
        if self.start_jobs and self._release_database is None:
            self._release_database = hold_database(self.db)
        await super().start(token, reconnect=reconnect)

    async def setup_hook(self) -> None:
        self.notifier = DiscordNotifier(self, clock=self.clock)
        s = self.settings
        self.runner = JobRunner(
            db=self.db,
            api=self.api,
            notifier=self.notifier,
            settings=RunnerSettings(
                max_running=s.max_running_jobs,
                video_dir=s.video_dir,
                callback_base_url=s.callback_public_url,
                max_video_bytes=s.max_video_bytes,
                download_timeout=s.download_timeout,
                retry_base=2.0 * s.time_scale,
                retry_cap=120.0 * s.time_scale,
                health_interval=60.0 * s.time_scale,
                job_timeout=s.job_timeout,
                unconfirmed_wait=3600.0 * s.time_scale,
                queue_refresh=10.0 * s.time_scale,
                lease_seconds=s.job_lease_seconds,
                process_name=s.process_name,
                poll_retries=s.status_read_failures,
            ),
            schedule=PollSchedule().scaled(s.time_scale),
            metrics=self.services.metrics,
        )
        if self.has_gateway:  # a worker receives no interactions: it has no commands to answer
            for name in COGS:
                await self.load_extension(name)
        if not self.start_jobs:
            return
        if s.callback_public_url:
            self._callbacks = CallbackServer(self.db, self.runner, s.callback_host, s.callback_port)
            await self._callbacks.start()
        await self._start_ops()
        if self.sync_on_start and self.has_gateway:
            await self.sync_commands(s.dev_guild_id, only_if_changed=True)
        resumed = await self.runner.start()
        log.info("bot ready to work", extra={"resumed_jobs": resumed})

    async def sync_commands(self, guild_id: int | None, *, only_if_changed: bool) -> bool:
        """Register commands globally, or to one guild (copying the global ones) for instant development."""
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        if only_if_changed:
            return await sync_if_changed(self.tree, guild)
        await self.tree.sync(guild=guild)
        return True

    async def _start_ops(self) -> None:
        """Serve /metrics and /healthz when METRICS_PORT is set, and watch the event loop's lag."""
        s = self.settings
        self._lag = asyncio.create_task(watch_loop_lag(self.services.metrics), name="loop-lag")
        if s.metrics_port is None:
            return
        self._ops = OpsServer(self.services.metrics, lambda: ops.probe(self), lambda: ops.refresh(self),
                              s.metrics_host, s.metrics_port)
        await self._ops.start()

    def shard_latencies(self) -> list[tuple[int, float]]:
        """Heartbeat latency of each shard this process connected."""
        return list(self.latencies)

    def expected_shards(self) -> list[int]:
        """The shards this process is meant to hold (known once discord.py asked Discord for the count)."""
        if not self.has_gateway:
            return []
        if self.shard_ids is not None:
            return list(self.shard_ids)
        return list(range(self.shard_count or 0))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Pace IDENTIFYs as Discord allows: one per 5 s per concurrency bucket (`shard_id % max_concurrency`),
        instead of discord.py's flat 5 s before every shard but the first (so `initial` does not matter)."""
        del initial
        await self.identify_gate.wait(shard_id or 0, self.fetch_session_start_limits)

    # discord.py's per-shard connection events keep the gateway table of /healthz up to date
    async def on_shard_connect(self, shard_id: int) -> None:
        self.gateway_state.up(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.gateway_state.up(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.gateway_state.down(shard_id)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        if self._callbacks is not None:
            await self._callbacks.stop()
        if self._lag is not None:
            self._lag.cancel()
        if self._ops is not None:
            await self._ops.stop()
        if self._release_database is not None:
            self._release_database()
            self._release_database = None
        await super().close()


def point_discord_py_at(settings: Settings) -> None:
    """Send discord.py's REST calls and gateway connection where the operator said (a proxy, or a local Discord)."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
