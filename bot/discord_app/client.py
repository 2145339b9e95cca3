"""The Discord client: wires the injected services, the job runner and its Discord notifier, loads the cogs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import discord
import yarl
from discord.ext import commands

from bot.callbacks import CallbackServer
from bot.config import Settings
from bot.discord_app.command_sync import sync_if_changed
from bot.discord_app.notifier import DiscordNotifier
from bot.discord_app.tree import SoraTree
from bot.jobs.runner import JobRunner
from bot.jobs.settings import RunnerSettings
from bot.services import Services
from bot.upstream.retry import PollSchedule

log = logging.getLogger(__name__)

COGS = ("cogs.sora", "cogs.admin")
GUILD_READY_TIMEOUT = 2.0  # seconds discord.py waits after the last GUILD_CREATE before on_ready (its default)


class SoraBot(commands.Bot):
    """The bot: owns the job runner and callback server; everything else is injected."""

    def __init__(self, services: Services, *, sync_on_start: bool = True, start_jobs: bool = True,
                 guild_ready_timeout: float = GUILD_READY_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=SoraTree,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            guild_ready_timeout=guild_ready_timeout,  # tests shorten it: their guilds all arrive at once
        )
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

    @property
    def tree(self) -> SoraTree:
        """The command tree as the class passed to discord.py (`tree_cls`), so its `report()` is visible."""
        tree = super().tree
        assert isinstance(tree, SoraTree)
        return tree

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
            ),
            schedule=PollSchedule().scaled(s.time_scale),
        )
        for name in COGS:
            await self.load_extension(name)
        if not self.start_jobs:
            return
        if s.callback_public_url:
            self._callbacks = CallbackServer(self.db, self.runner, s.callback_host, s.callback_port)
            await self._callbacks.start()
        if self.sync_on_start:
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

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        if self._callbacks is not None:
            await self._callbacks.stop()
        await super().close()


def point_discord_py_at(settings: Settings) -> None:
    """Send discord.py's REST calls and gateway connection where the operator said (a proxy, or a local Discord)."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
