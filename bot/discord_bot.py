"""The Discord client: wiring of services into cogs, one error path, persistent views, careful syncing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.callbacks import CallbackServer
from bot.command_sync import sync_if_changed
from bot.config import Settings
from bot.images import ImageRejected
from bot.jobs.runner import JobRunner, RunnerSettings
from bot.prompts import PromptRejected
from bot.upstream.client import VideoAPIClient
from bot.upstream.retry import PollSchedule
from storage.db import Database
from storage.errors import QuotaRefused

if TYPE_CHECKING:
    from bot.jobs.notifier import Notifier

log = logging.getLogger(__name__)

COGS = ("cogs.sora", "cogs.admin")
INTERNAL_ERROR = "Something went wrong on my side. Nothing was charged; please try again in a moment."


class UserFacingError(app_commands.AppCommandError):
    """An error whose text is written for the member and can be shown as-is."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


def friendly_message(error: BaseException) -> str | None:
    """The sentence a member should read for a known error, or None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserFacingError | QuotaRefused | PromptRejected | ImageRejected):
        return error.user_message
    if isinstance(error, app_commands.MissingPermissions):
        return "Only members with the Manage Server permission can use this."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only inside a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"I couldn't understand {error.value!r} for that option."
    return None


async def reply_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer privately whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not deliver an error reply", extra={"interaction": interaction.id})


class SoraTree(app_commands.CommandTree["SoraBot"]):
    """One place that turns every failure into a friendly private answer and a log line."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.guild_id is not None or interaction.type is discord.InteractionType.autocomplete

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        message = friendly_message(error)
        if message is None:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command failed", exc_info=error, extra={"command": command, "guild": interaction.guild_id})
            message = INTERNAL_ERROR
        await reply_ephemeral(interaction, message)


@dataclass
class Services:
    """What the cogs need, built once by the entry point and handed over (no globals)."""

    settings: Settings
    db: Database
    api: VideoAPIClient
    session: aiohttp.ClientSession


class SoraBot(commands.Bot):
    """The bot: owns the job runner and callback server; everything else is injected."""

    def __init__(self, services: Services, *, sync_on_start: bool = True, start_jobs: bool = True) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=SoraTree,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
        )
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.api = services.api
        self.sync_on_start = sync_on_start
        self.start_jobs = start_jobs
        self.runner: JobRunner | None = None
        self.notifier: Notifier | None = None
        self._callbacks: CallbackServer | None = None

    @property
    def guild_ready_timeout(self) -> float:
        """Seconds discord.py waits after the last GUILD_CREATE before `on_ready` (2 s by default)."""
        return self._connection.guild_ready_timeout

    @guild_ready_timeout.setter
    def guild_ready_timeout(self, seconds: float) -> None:
        # discord.py reads this from the connection state, so setting it on the client alone would do nothing.
        if seconds < 0:
            raise ValueError("guild_ready_timeout cannot be negative")
        self._connection.guild_ready_timeout = seconds

    async def setup_hook(self) -> None:
        from cogs.sora import DiscordNotifier

        self.notifier = DiscordNotifier(self)
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
