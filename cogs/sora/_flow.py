"""One flow for `/sora generate`, Animate with Sora, Re-roll, Edit and Extend: acknowledge, check, hold, run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.discord_app.render import refusal_text
from bot.discord_app.tree import INTERNAL_ERROR
from bot.images import ImageRejected, ImageUnavailable, MediaOrigins, check_image, check_size, fetch_image
from bot.pricing import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, DURATIONS, cost
from bot.prompts import check_prompt
from storage.errors import UserFacingError
from storage.models import NewJob

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".heic", ".avif", ".tif", ".tiff")
REUSED_IMAGE_GONE = ("The first frame's link has expired; attach it again with /sora generate. "
                     "Nothing was charged.")
REUSED_IMAGE_CHANGED = ("The first frame's link no longer leads to a picture I can use; attach it again with "
                        "/sora generate. Nothing was charged.")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """A first-frame image known by URL (an attachment or an embed's proxy), not yet read.

    `reused` marks the image of an earlier job (Re-roll): its link may have expired or changed since.
    """

    url: str
    size: int | None = None
    filename: str | None = None
    reused: bool = False


class Refusal(UserFacingError):
    """A check of the flow failed; the text tells the member what to do, and nothing was charged."""


def _images_in(attachments: Iterable[discord.Attachment], embeds: Iterable[discord.Embed]) -> Iterator[ImageSource]:
    """Images of one message (or snapshot), by Discord's own URLs only.

    An embed's `url` is whatever link the member wrote; its `proxy_url` is Discord's copy on its media host.
    Only the latter is ever used, so a link cannot make the bot (or the upstream) open an address of the
    member's choosing.
    """
    for attachment in attachments:
        kind = (attachment.content_type or "").split(";")[0]
        if kind.startswith("image/") or attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            yield ImageSource(attachment.url, attachment.size, attachment.filename)
    for embed in embeds:
        for proxy_url in (embed.image.proxy_url, embed.thumbnail.proxy_url):
            if proxy_url:
                yield ImageSource(proxy_url)


def image_from_message(message: discord.Message) -> ImageSource | None:
    """The first image a message carries: attached, in a link's embed, or in a forwarded message's snapshot."""
    parts = [(message.attachments, message.embeds)]
    parts += [(snapshot.attachments, snapshot.embeds) for snapshot in message.message_snapshots]
    for attachments, embeds in parts:
        for image in _images_in(attachments, embeds):
            return image
    return None


def member_roles(interaction: discord.Interaction[SoraBot]) -> tuple[int, ...] | None:
    """The member's roles as this interaction shows them (what their tier follows; no privileged intent)."""
    user = interaction.user
    return tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else None


class GenerationFlow:
    """Turn an interaction into a held, queued job, or into a private, precise refusal."""

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        self.origins = MediaOrigins.discord(bot.services.settings.discord_api_base)

    async def start(self, interaction: discord.Interaction[SoraBot], *, prompt: str, duration: int | None,
                    aspect_ratio: str | None, image: ImageSource | None = None) -> None:
        """Acknowledge first (inside Discord's 3 s), then check everything before holding credits."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await self._accept(interaction, prompt, duration, aspect_ratio, image)
        except UserFacingError as exc:
            text = refusal_text(exc)
        except Exception:
            log.exception("generate failed before a job was created", extra={"guild": interaction.guild_id})
            text = INTERNAL_ERROR
        try:
            await interaction.edit_original_response(content=text)
        except discord.HTTPException as exc:
            log.info("could not answer the requester", extra={"status": exc.status})

    async def prepare(self, interaction: discord.Interaction[SoraBot], prompt: str, duration: int | None,
                      aspect_ratio: str | None) -> NewJob:
        """The request as it would be held, checked read-only: options, prompt, then the member's standing.

        Why this order: a refused member must cost a database read, not a 10 MB download and a decode. A
        confirmation (Re-roll, Edit, Extend) runs this before it names a cost, and `start` again after.

        Raises:
            UserFacingError: the refusal to show (nothing was written).
        """
        bot = self.bot
        assert bot.runner is not None and interaction.guild_id is not None
        if not bot.runner.health.accepting:
            raise Refusal(bot.runner.health.refusal or "The video service is unavailable right now.")
        settings = await bot.db.guilds.get(interaction.guild_id)
        cleaned = check_prompt(prompt, settings.banned_words)  # PromptRejected is a UserFacingError
        duration = duration or settings.default_duration
        if duration not in DURATIONS:
            raise Refusal("Duration must be 4, 8 or 12 seconds.")
        aspect_ratio = aspect_ratio or DEFAULT_ASPECT_RATIO
        if aspect_ratio not in ASPECT_RATIOS:
            raise Refusal("Aspect ratio must be 16:9 or 9:16.")
        request = NewJob(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id,
            prompt=cleaned,
            duration=duration,
            aspect_ratio=aspect_ratio,
            cost=cost(duration),
            parent_channel_id=getattr(interaction.channel, "parent_id", None),
            interaction_application_id=interaction.application_id,
            interaction_token=interaction.token,
            interaction_token_expires_at=interaction.expires_at.timestamp(),
            upload_limit=interaction.filesize_limit,
            role_ids=member_roles(interaction),
        )
        await bot.db.jobs.precheck(request)  # blocked, channel, limits, cooldown, budget, balance: no write
        return request

    async def _accept(self, interaction: discord.Interaction[SoraBot], prompt: str, duration: int | None,
                      aspect_ratio: str | None, image: ImageSource | None) -> str:
        """Cheapest checks first (`prepare`), then the image, then the hold, atomically with the same checks."""
        bot = self.bot
        assert bot.runner is not None
        request = await self.prepare(interaction, prompt, duration, aspect_ratio)
        if image is not None:
            request = dataclasses.replace(request, image_url=await self._check_image(image))
        job = await bot.db.jobs.create_with_hold(request)  # the same checks again, atomically with the hold
        log.info("job accepted", extra={"job": job.id, "guild": job.guild_id, "credits": job.cost})
        bot.runner.metrics.credits_moved("held", job.cost)
        bot.runner.launch(job)
        balance = await bot.db.ledger.balance(job.guild_id, job.user_id, member_roles(interaction))
        return (f"Got it! {job.cost} credits are held for your {job.duration} s video and charged only when "
                f"it's delivered (refunded if it fails). You have {balance.available} credits left. "
                "Progress is shown in the channel.")

    async def _check_image(self, image: ImageSource) -> str:
        """Read the image from Discord's media hosts and check its bytes; return the URL for the upstream.

        The returned URL is exactly the one that was checked and read, so the upstream fetches what we saw.
        A re-used image (Re-roll) that can no longer be read is explained as such, not blamed on its content.
        """
        try:
            url = self.origins.check(image.url)
            if image.size is not None:
                check_size(image.size)
            data = await fetch_image(self.bot.services.session, url, self.origins)
            await asyncio.to_thread(check_image, data)
        except ImageUnavailable:
            if image.reused:
                raise Refusal(REUSED_IMAGE_GONE) from None
            raise
        except ImageRejected as exc:
            log.info("first frame refused", extra={"reason": type(exc).__name__, "reused": image.reused})
            if image.reused:
                raise Refusal(REUSED_IMAGE_CHANGED) from None
            raise
        return url
