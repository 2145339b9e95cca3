"""The job runner's voice on Discord: status messages, delivery with fallbacks, and the upload limit."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.jobs.notifier import Delivery, StatusUpdate, TooLarge, Undeliverable
from cogs.sora import _render
from cogs.sora._views import RerollButton
from storage.models import Job

if TYPE_CHECKING:
    from bot.discord_bot import SoraBot

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_MARGIN = 30.0  # seconds before expiry when the interaction token is no longer trusted
STOP_EDITING = {30046, 10008, 10003, 50001, 50013}  # edit cap, unknown message/channel, no access


def _code(exc: discord.HTTPException) -> int:
    return getattr(exc, "code", 0) or 0


class DiscordNotifier:
    """Implements `bot.jobs.notifier.Notifier` with the bot's own messages, falling back sensibly."""

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        self._no_edit: set[str] = set()

    # ---- status --------------------------------------------------------------------------------

    async def show_status(self, job: Job, update: StatusUpdate) -> None:
        text = _render.status_text(user_id=job.user_id, prompt=job.prompt, duration=job.duration,
                                   aspect_ratio=job.aspect_ratio, credits=job.cost, update=update)
        fresh = await self.bot.db.jobs.get(job.id) or job
        if fresh.status_message_id is None:
            await self._create_status(fresh, text)
            return
        if job.id in self._no_edit:
            return
        channel = self.bot.get_partial_messageable(fresh.status_channel_id or fresh.channel_id)
        try:
            await channel.get_partial_message(fresh.status_message_id).edit(content=text)
        except discord.HTTPException as exc:
            if _code(exc) in STOP_EDITING or exc.status in (403, 404):
                self._no_edit.add(job.id)
            log.info("status edit refused", extra={"job": job.id, "status": exc.status, "code": _code(exc)})

    async def _create_status(self, job: Job, text: str) -> None:
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.send(text)
        except discord.HTTPException as exc:
            log.info("cannot post status in channel", extra={"job": job.id, "status": exc.status, "code": _code(exc)})
            self._no_edit.add(job.id)
            return
        await self.bot.db.jobs.set_status_message(job.id, message.channel.id, message.id)

    # ---- delivery ------------------------------------------------------------------------------

    async def upload_limit(self, job: Job) -> int:
        if job.upload_limit:
            return job.upload_limit
        guild = self.bot.get_guild(job.guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver_file(self, job: Job, video: Path) -> Delivery:
        def file() -> discord.File:
            return discord.File(video, filename=f"sora-{job.id[:8]}.mp4")

        return await self._post(job, None, file)

    async def deliver_link(self, job: Job, url: str, expires_at: float | None) -> Delivery:
        return await self._post(job, (url, expires_at), None)

    async def _post(self, job: Job, link: tuple[str, float | None] | None, file: object) -> Delivery:
        balance = await self.bot.db.ledger.balance(job.guild_id, job.user_id)
        text = _render.result_text(
            user_id=job.user_id, prompt=job.prompt, duration=job.duration, aspect_ratio=job.aspect_ratio,
            credits=job.cost, balance=balance.available, link=link[0] if link else None,
            link_expires_at=link[1] if link else None,
        )
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(job.user_id)])
        view = discord.ui.View(timeout=None)
        view.add_item(RerollButton(job.id))

        def kwargs() -> dict[str, object]:
            out: dict[str, object] = {"content": text, "allowed_mentions": mentions, "view": view}
            if file is not None:
                out["file"] = file()  # type: ignore[operator]
            return out

        webhook = self._webhook(job)
        if webhook is not None:
            try:
                message = await webhook.send(wait=True, **kwargs())  # type: ignore[arg-type]
                return Delivery(self._link(job, message), "interaction")
            except discord.HTTPException as exc:
                self._raise_if_too_large(exc)
                log.info("followup delivery failed", extra={"job": job.id, "status": exc.status, "code": _code(exc)})
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.send(**kwargs())  # type: ignore[arg-type]
            return Delivery(self._link(job, message), "channel")
        except discord.HTTPException as exc:
            self._raise_if_too_large(exc)
            log.info("channel delivery failed", extra={"job": job.id, "status": exc.status, "code": _code(exc)})
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            message = await user.send(**kwargs())  # type: ignore[arg-type]
            return Delivery(message.jump_url, "dm")
        except discord.HTTPException as exc:
            self._raise_if_too_large(exc)
            log.warning("DM delivery failed", extra={"job": job.id, "status": exc.status, "code": _code(exc)})
        raise Undeliverable(job.id)

    @staticmethod
    def _link(job: Job, message: discord.Message) -> str:
        """A jump link that opens in the server (a webhook message's own jump_url points at @me)."""
        return f"https://discord.com/channels/{job.guild_id}/{message.channel.id}/{message.id}"

    @staticmethod
    def _raise_if_too_large(exc: discord.HTTPException) -> None:
        if exc.status == 413 or _code(exc) == 40005:
            raise TooLarge() from exc

    def _webhook(self, job: Job) -> discord.Webhook | None:
        """The interaction's followup webhook while its token is still alive, else None."""
        if not job.interaction_usable(time.time(), TOKEN_MARGIN) or not job.interaction_application_id:
            return None
        assert job.interaction_token is not None
        # An application webhook (type 3), as discord.py builds `Interaction.followup`: a plain partial webhook
        # refuses ephemeral messages, which silenced every private failure notice.
        data = {"id": job.interaction_application_id, "type": 3, "token": job.interaction_token}
        return discord.Webhook.from_state(data=data, state=self.bot._connection)  # type: ignore[arg-type]

    async def find_delivery(self, job: Job) -> Delivery | None:
        """Look through the channel's messages since the job began for our post carrying its Re-roll button."""
        wanted = f"sora:reroll:{job.id}"
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        since = discord.Object(discord.utils.time_snowflake(datetime.fromtimestamp(job.created_at, UTC)))
        try:
            async for message in channel.history(limit=100, after=since):
                if message.author.id != getattr(self.bot.user, "id", None):
                    continue
                for row in message.components:
                    for child in getattr(row, "children", ()):
                        if getattr(child, "custom_id", None) == wanted:
                            return Delivery(self._link(job, message), "channel")
        except discord.HTTPException as exc:
            log.info("cannot read channel history", extra={"job": job.id, "status": exc.status, "code": _code(exc)})
        return None

    async def announce_failure(self, job: Job, message: str) -> None:
        webhook = self._webhook(job)
        if webhook is None:
            return
        with contextlib.suppress(discord.HTTPException):
            await webhook.send(f"Your video couldn't be made. {message}", ephemeral=True)
