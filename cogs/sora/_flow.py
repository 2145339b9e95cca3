"""One flow for `/sora generate`, Animate with Sora and Re-roll: acknowledge, check, hold, hand to the runner."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.images import MAX_IMAGE_BYTES, ImageRejected, check_image, check_size
from bot.pricing import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, DURATIONS, cost
from bot.prompts import check_prompt
from cogs.sora._views import ConfirmReroll
from storage.errors import QuotaRefused
from storage.models import NewJob

if TYPE_CHECKING:
    from bot.discord_bot import SoraBot

log = logging.getLogger(__name__)

IMAGE_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".heic", ".avif", ".tif", ".tiff")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """A first-frame image known by URL (an attachment or an embed), not yet read."""

    url: str
    size: int | None = None
    filename: str | None = None


class Refusal(Exception):
    """A check failed; the text tells the member what to do, and nothing was charged."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


def image_from_message(message: discord.Message) -> ImageSource | None:
    """The first image a message carries, as an attachment or an embed."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0]
        if kind.startswith("image/") or attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            return ImageSource(attachment.url, attachment.size, attachment.filename)
    for embed in message.embeds:
        for url in (embed.image.url, embed.thumbnail.url):
            if url:
                return ImageSource(url)
    return None


class GenerationFlow:
    """Turn an interaction into a held, queued job, or into a private, precise refusal."""

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    async def start(self, interaction: discord.Interaction, *, prompt: str, duration: int | None,
                    aspect_ratio: str | None, image: ImageSource | None = None,
                    image_url: str | None = None) -> None:
        """Acknowledge first (inside Discord's 3 s), then check everything before holding credits."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await self._accept(interaction, prompt, duration, aspect_ratio, image, image_url)
        except (Refusal, QuotaRefused, ImageRejected) as exc:
            text = f"{exc.user_message}"
        except Exception:
            log.exception("generate failed before a job was created", extra={"guild": interaction.guild_id})
            text = "Something went wrong on my side. Nothing was charged; please try again in a moment."
        try:
            await interaction.edit_original_response(content=text)
        except discord.HTTPException as exc:
            log.info("could not answer the requester", extra={"status": exc.status})

    async def _accept(self, interaction: discord.Interaction, prompt: str, duration: int | None,
                      aspect_ratio: str | None, image: ImageSource | None, image_url: str | None) -> str:
        bot = self.bot
        assert bot.runner is not None and interaction.guild_id is not None
        if not bot.runner.health.accepting:
            raise Refusal(bot.runner.health.refusal or "The video service is unavailable right now.")
        settings = await bot.db.guilds.get(interaction.guild_id)
        try:
            cleaned = check_prompt(prompt, settings.banned_words)
        except ValueError as exc:
            raise Refusal(getattr(exc, "user_message", str(exc))) from None
        duration = duration or settings.default_duration
        if duration not in DURATIONS:
            raise Refusal("Duration must be 4, 8 or 12 seconds.")
        aspect_ratio = aspect_ratio or DEFAULT_ASPECT_RATIO
        if aspect_ratio not in ASPECT_RATIOS:
            raise Refusal("Aspect ratio must be 16:9 or 9:16.")
        if image is not None:
            await self._check_image(image)
            image_url = image.url
        channel_id = interaction.channel_id or 0
        job = await bot.db.jobs.create_with_hold(NewJob(
            guild_id=interaction.guild_id,
            channel_id=channel_id,
            user_id=interaction.user.id,
            prompt=cleaned,
            duration=duration,
            aspect_ratio=aspect_ratio,
            image_url=image_url,
            cost=cost(duration),
            parent_channel_id=getattr(interaction.channel, "parent_id", None),
            interaction_application_id=interaction.application_id,
            interaction_token=interaction.token,
            interaction_token_expires_at=interaction.expires_at.timestamp(),
            upload_limit=interaction.filesize_limit,
        ))
        log.info("job accepted", extra={"job": job.id, "guild": job.guild_id, "credits": job.cost})
        bot.runner.launch(job)
        balance = await bot.db.ledger.balance(job.guild_id, job.user_id)
        return (f"Got it! {job.cost} credits are held for your {duration} s video and charged only when it's "
                f"delivered (refunded if it fails). You have {balance.available} credits left. "
                "Progress is shown in the channel.")

    async def _check_image(self, image: ImageSource) -> None:
        if image.size is not None:
            check_size(image.size)
        data = await self._fetch_image(image.url)
        await asyncio.to_thread(check_image, data)

    async def _fetch_image(self, url: str) -> bytes:
        """Read at most 10 MB of the image, with a time bound; only http(s)."""
        if not url.lower().startswith(("http://", "https://")):
            raise Refusal("That image link isn't a web address I can open.")
        session = self.bot.services.session
        try:
            async with session.get(url, timeout=IMAGE_TIMEOUT, allow_redirects=True) as response:
                if response.status != 200:
                    raise Refusal("I couldn't download that image (its link may have expired). Attach it again.")
                if response.content_length and response.content_length > MAX_IMAGE_BYTES:
                    check_size(response.content_length)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        check_size(len(data))
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError):
            raise Refusal("I couldn't download that image in time. Try attaching it again.") from None

    # ---- re-roll -------------------------------------------------------------------------------

    async def offer_reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        job = await self.bot.db.jobs.get(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message("That video is no longer known to me.", ephemeral=True)
            return
        balance = await self.bot.db.ledger.balance(job.guild_id, interaction.user.id)
        await interaction.response.send_message(
            f"Make this video again for **{job.cost} credits**? You have {balance.available}.",
            view=ConfirmReroll(self, job.id, interaction.user.id), ephemeral=True,
        )

    async def reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        job = await self.bot.db.jobs.get(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message("That video is no longer known to me.", ephemeral=True)
            return
        await self.start(interaction, prompt=job.prompt, duration=job.duration, aspect_ratio=job.aspect_ratio,
                         image_url=job.image_url)
