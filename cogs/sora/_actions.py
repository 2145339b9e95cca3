"""The buttons and forms of the members' cog: Cancel, Re-roll, Edit, Extend, Animate, and their confirmations.

Every answer is private; nothing is held before the member confirms a priced offer, and the confirmed request
runs the one accept path (`GenerationFlow.start`), so it is checked, held, charged and refunded like any
`/sora generate`. Buttons carry their job in their custom id and forms are answered from their submitted
values, so both work on messages from before a restart; what only memory knew (an offer, an open Animate form)
is answered "expired, nothing was charged".
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord

from bot.discord_app import render
from bot.discord_app.items import JobAction, offer_buttons
from bot.pricing import DURATIONS
from cogs.sora import _extend, _forms
from cogs.sora._flow import GenerationFlow, ImageSource, Refusal, image_from_message, member_roles
from cogs.sora._pending import AnimateForm, Offer, OfferKind, Pending
from storage.errors import UserFacingError
from storage.models import Job

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

UNKNOWN_JOB = "That video is no longer known to me (its data may have been deleted). Nothing was charged."
NOT_YOURS = "Only the member who asked for this video, or a server admin, can cancel it."
TOO_LATE = ("Too late to cancel: the video was already sent to the video service, which can't stop it. "
            "It is charged only if it's delivered, and refunded if it fails.")
OFFER_GONE = ("That confirmation is no longer open: it was answered already, it expired (confirmations last "
              "15 minutes) or I restarted since. Nothing was charged for this press; press the button on the "
              "video again if you want another.")
FORM_GONE = ("That form expired (forms last 15 minutes) or I restarted since. Use Animate with Sora on the "
             "message again. Nothing was charged.")
NO_IMAGE = "That message has no image. Use Animate with Sora on a message with a picture attached."
WHAT: dict[OfferKind, str] = {"reroll": "Make this video again", "edit": "Make the edited video",
                              "extend": "Continue this video from its last frame"}


def _ended_text(job: Job) -> str:
    if job.error_code == "cancelled":
        return "This video was already cancelled; its credits were released."
    if job.state == "delivered":
        return "This video is already done, so there is nothing to cancel."
    if job.is_finished:
        return "This video already ended, and its credits were released. Nothing to cancel."
    return TOO_LATE


class JobActions:
    """What the cog's buttons and forms do; `flow` is the one accept path."""

    def __init__(self, bot: SoraBot, flow: GenerationFlow) -> None:
        self.bot, self.flow = bot, flow
        self.offers: Pending[Offer] = Pending(bot.clock)
        self.forms: Pending[AnimateForm] = Pending(bot.clock)

    async def _job_here(self, interaction: discord.Interaction[SoraBot], job_id: str) -> Job | None:
        """The pressed message's job, if this server still knows it; else the member is told, privately."""
        job = await self.bot.db.jobs.get(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            await _say(interaction, UNKNOWN_JOB)
            return None
        return job

    async def durations_for(self, interaction: discord.Interaction[SoraBot]) -> tuple[int, ...]:
        """The durations this member may choose: their tiers' (storage.tiers), else all; what forms offer."""
        assert interaction.guild_id is not None
        found = await self.bot.db.tiers.for_member(interaction.guild_id, interaction.user.id,
                                                   member_roles(interaction))
        return found.durations or DURATIONS

    # ---- buttons -------------------------------------------------------------------------------

    async def press(self, interaction: discord.Interaction[SoraBot], action: JobAction, job_id: str) -> None:
        if action == "cancel":
            await self.cancel(interaction, job_id)
            return
        job = await self._job_here(interaction, job_id)
        if job is None:
            return
        if action == "reroll":
            await interaction.response.defer(ephemeral=True, thinking=True)
            image = ImageSource(job.image_url, reused=True) if job.image_url else None
            await self._offer(interaction, Offer("reroll", interaction.user.id, job.id, job.prompt, job.duration,
                                                 job.aspect_ratio, image))
        elif action == "edit":
            durations = await self.durations_for(interaction)
            await interaction.response.send_modal(_forms.build_form(
                _forms.EDIT_FORM + job.id, "Edit this video", durations=durations,
                duration=job.duration if job.duration in durations else durations[0],
                aspect_ratio=job.aspect_ratio, prompt=job.prompt))
        elif not _extend.has_source(self.bot, job, interaction.message):
            await _say(interaction, _extend.SOURCE_GONE)
        else:
            durations = await self.durations_for(interaction)
            await interaction.response.send_modal(_forms.build_form(
                _forms.EXTEND_FORM + job.id, "Extend this video", durations=durations,
                duration=job.duration if job.duration in durations else durations[0], aspect_ratio=None,
                placeholder="What happens next?"))

    async def cancel(self, interaction: discord.Interaction[SoraBot], job_id: str) -> None:
        """End a queued job at once, release its hold, edit its status; requester or Manage Server only."""
        job = await self._job_here(interaction, job_id)
        if job is None:
            return
        if interaction.user.id != job.user_id and not interaction.permissions.manage_guild:
            await _say(interaction, NOT_YOURS)
            return
        await interaction.response.defer()  # the status message itself is edited below
        if not await self.bot.db.jobs.cancel_queued(job.id, interaction.user.id):
            fresh = await self.bot.db.jobs.get(job.id)
            await interaction.followup.send(_ended_text(fresh) if fresh else UNKNOWN_JOB, ephemeral=True)
            return
        runner = self.bot.runner
        if runner is not None:
            await runner.abort(job.id)  # leaves the queue; its slot (if it had just got one) is freed
            runner.metrics.credits_moved("released", job.cost)
        by_requester = interaction.user.id == job.user_id
        text = render.cancelled_status_text(
            user_id=job.user_id, prompt=job.prompt, duration=job.duration, aspect_ratio=job.aspect_ratio,
            credits=job.cost, elapsed=max(0.0, self.bot.clock() - job.created_at), by_requester=by_requester)
        try:
            await interaction.edit_original_response(content=text, view=None)
        except discord.HTTPException as exc:
            log.info("could not edit a cancelled job's status", extra={"job": job.id, "status": exc.status})
        balance = await self.bot.db.ledger.balance(job.guild_id, job.user_id)
        await interaction.followup.send(
            f"Cancelled. The {job.cost} credits held for it are back; you have {balance.available}."
            if by_requester else f"Cancelled <@{job.user_id}>'s video; the {job.cost} credits held for it "
            "went back to them.", ephemeral=True)

    # ---- forms ---------------------------------------------------------------------------------

    async def open_animate(self, interaction: discord.Interaction[SoraBot], message: discord.Message) -> None:
        image = image_from_message(message)
        if image is None:
            await _say(interaction, NO_IMAGE)
            return
        assert interaction.guild_id is not None
        settings = await self.bot.db.guilds.get(interaction.guild_id)
        durations = await self.durations_for(interaction)
        key = self.forms.put(AnimateForm(interaction.user.id, image))
        await interaction.response.send_modal(_forms.build_form(
            _forms.ANIMATE_FORM + key, "Animate with Sora", durations=durations, aspect_ratio="16:9",
            duration=settings.default_duration if settings.default_duration in durations else durations[0]))

    async def submit(self, interaction: discord.Interaction[SoraBot], custom_id: str) -> None:
        """A form of ours was submitted: read its values and go on, whatever happened since it opened."""
        prompt, duration, ratio = _forms.choices(_forms.submitted(interaction.data))  # Refusal: forged values
        if custom_id.startswith(_forms.ANIMATE_FORM):
            form = self.forms.take(custom_id.removeprefix(_forms.ANIMATE_FORM))
            if form is None or form.user_id != interaction.user.id:
                await _say(interaction, FORM_GONE)
                return
            await self.flow.start(interaction, prompt=prompt, duration=duration, aspect_ratio=ratio,
                                  image=form.image)
            return
        is_edit = custom_id.startswith(_forms.EDIT_FORM)
        job_id = custom_id.removeprefix(_forms.EDIT_FORM if is_edit else _forms.EXTEND_FORM)
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self._job_here(interaction, job_id)
        if job is None:
            return
        if is_edit:
            image = ImageSource(job.image_url, reused=True) if job.image_url else None
            await self._offer(interaction, Offer("edit", interaction.user.id, job.id, prompt,
                                                 duration or job.duration, ratio or job.aspect_ratio, image))
        else:
            await self._offer(interaction, Offer("extend", interaction.user.id, job.id, prompt,
                                                 duration or job.duration, job.aspect_ratio, None), job)

    # ---- offers --------------------------------------------------------------------------------

    async def _offer(self, interaction: discord.Interaction[SoraBot], offer: Offer, extend: Job | None = None) -> None:
        """Check the request read-only, then name its cost privately with Yes / No (the interaction is
        deferred). Extend first takes the frame and posts it with the confirmation: its Discord URL is the
        new video's first frame."""
        try:
            request = await self.flow.prepare(interaction, offer.prompt, offer.duration, offer.aspect_ratio)
            frame = await _extend.frame_of(self.bot, extend, interaction.message) if extend is not None else None
        except UserFacingError as exc:
            await interaction.edit_original_response(content=render.refusal_text(exc))
            return
        balance = await self.bot.db.ledger.balance(request.guild_id, request.user_id, request.role_ids)
        text = render.offer_text(WHAT[offer.kind], request.cost, balance.available, request.duration,
                                 request.aspect_ratio, offer.prompt)
        key = self.offers.new_key()
        files = [discord.File(io.BytesIO(frame), filename="last-frame.png")] if frame is not None else []
        message = await interaction.edit_original_response(content=text, view=offer_buttons(key),
                                                           attachments=files)
        if frame is not None:
            if not message.attachments:
                raise Refusal(_extend.NO_FRAME)
            offer = Offer(offer.kind, offer.user_id, offer.source_job_id, offer.prompt, offer.duration,
                          offer.aspect_ratio, ImageSource(message.attachments[0].url, reused=True))
        self.offers.put(offer, key)

    async def answer(self, interaction: discord.Interaction[SoraBot], key: str, accepted: bool) -> None:
        """Yes runs the offer through the one accept path, once; No drops it. Nothing is charged before."""
        offer = self.offers.take(key)
        if not accepted:
            await interaction.response.edit_message(content="Cancelled; nothing was charged.", view=None,
                                                    attachments=[])
            return
        if offer is None or offer.user_id != interaction.user.id:
            await _say(interaction, OFFER_GONE)
            return
        await self.flow.start(interaction, prompt=offer.prompt, duration=offer.duration,
                              aspect_ratio=offer.aspect_ratio, image=offer.image)


async def _say(interaction: discord.Interaction[SoraBot], text: str) -> None:
    """A private answer, as the first response or after a defer."""
    if interaction.response.is_done():
        await interaction.edit_original_response(content=text)
    else:
        await interaction.response.send_message(text, ephemeral=True)
