"""Build every resource in one place, hand them to the bot, and close them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import discord

from bot.config import Settings
from bot.discord_app.client import SoraBot, point_discord_py_at
from bot.ops.metrics import Metrics
from bot.services import Services
from bot.upstream.client import Timeouts, VideoAPIClient
from bot.upstream.retry import RetryPolicy
from storage.db import Database

log = logging.getLogger(__name__)

LOGIN_REFUSED = "sora-bot: Discord refused the token: check DISCORD_TOKEN."
WORKER_NEEDS_POSTGRES = ("sora-bot: a worker needs DATABASE_URL (a PostgreSQL database it shares with the bot "
                         "processes); on SQLite run a single `sora-bot run`.")


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the shared HTTP session, the database and the API client; close them in reverse order."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(headers={"User-Agent": "sora-bot/0.1"}, raise_for_status=False)
        )
        db = await Database.open(settings.database)
        stack.push_async_callback(db.close)
        scale = settings.time_scale
        metrics = Metrics()
        api = VideoAPIClient(
            session,
            base_url=settings.sora_api_base,
            api_key=settings.sora_api_key.get_secret_value(),
            retry=RetryPolicy(base_delay=0.5 * scale, max_delay=8.0 * scale),
            timeouts=Timeouts.uniform(settings.upstream_timeout) if settings.upstream_timeout else None,
            observer=metrics.upstream_call,
        )
        yield Services(settings=settings, db=db, api=api, session=session, metrics=metrics)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or Ctrl-C, so the process ends through bot.close() with its jobs' state on disk."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_bot(settings: Settings) -> int:
    """Run until SIGTERM or Ctrl-C; both end cleanly with every job's state already on disk."""
    assert settings.discord_token is not None
    point_discord_py_at(settings)
    async with open_services(settings) as services:
        bot = SoraBot(services)
        stop = _stop_on_signals()
        async with bot:
            runner = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()), name="discord")
            stopper = asyncio.create_task(stop.wait(), name="signals")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("shutting down")
                await bot.close()
            stopper.cancel()
            try:
                await runner
            except discord.LoginFailure:
                print(LOGIN_REFUSED, file=sys.stderr)
                return 2
    return 0


async def run_worker(settings: Settings) -> int:
    """`sora-bot worker`: drive jobs from the shared PostgreSQL database and post through Discord's REST API,
    with no gateway connection (so no commands: the processes whose shards hold the guilds answer those).

    `login()` runs the same setup_hook as `run` (runner, callback server, /metrics and /healthz) but no
    shard ever connects. On SQLite there is nothing to share: one line, exit 2.
    """
    if settings.database_url is None:
        print(WORKER_NEEDS_POSTGRES, file=sys.stderr)
        return 2
    assert settings.discord_token is not None
    point_discord_py_at(settings)
    async with open_services(settings) as services:
        bot = SoraBot(services, sync_on_start=False, gateway=False)
        stop = _stop_on_signals()
        async with bot:
            try:
                await bot.login(settings.discord_token.get_secret_value())
            except discord.LoginFailure:
                print(LOGIN_REFUSED, file=sys.stderr)
                return 2
            log.info("worker running: no gateway; driving jobs and posting over REST")
            await stop.wait()
            log.info("shutting down")
            await bot.close()
    return 0


async def sync_commands(settings: Settings, guild_id: int | None) -> int:
    """Log in, register the commands (to one guild or globally), and leave."""
    assert settings.discord_token is not None
    point_discord_py_at(settings)
    async with open_services(settings) as services:
        bot = SoraBot(services, sync_on_start=False, start_jobs=False)
        async with bot:
            try:
                await bot.login(settings.discord_token.get_secret_value())  # runs setup_hook: cogs loaded
            except discord.LoginFailure:
                print(LOGIN_REFUSED, file=sys.stderr)
                return 2
            target = guild_id or settings.dev_guild_id
            await bot.sync_commands(target, only_if_changed=False)
            where = f"server {target}" if target else "every server (global commands can take up to an hour to show)"
            print(f"sora-bot: commands registered for {where}.")
    return 0
