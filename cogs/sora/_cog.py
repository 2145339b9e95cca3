"""`/sora …` and the Animate with Sora context menu: parse, delegate to the flow, render."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app import render
from bot.discord_app.items import SORA_COG, JobAction, JobButton, OfferButton
from bot.pricing import ASPECT_RATIOS, DURATIONS, MAX_PROMPT_LENGTH, duration_label
from cogs.sora import _forms
from cogs.sora._actions import JobActions
from cogs.sora._flow import GenerationFlow, ImageSource, member_roles
from storage.models import Job

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

DURATION_CHOICES = [app_commands.Choice(name=duration_label(d), value=d) for d in DURATIONS]
RATIO_CHOICES = [
    app_commands.Choice(name=f"{r} ({'landscape' if r == '16:9' else 'portrait'})", value=r) for r in ASPECT_RATIOS
]


@app_commands.guild_only()
class SoraCog(commands.GroupCog, name=SORA_COG, group_name="sora",
              group_description="Make short AI videos with Sora 2"):
    """Members' commands; every answer about credits is private. Handles the persistent buttons and forms."""

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        self.flow = GenerationFlow(bot)
        self.actions = JobActions(bot, self.flow)
        # guild_only() sets both dm_permission and contexts=[guild]; the attribute alone left contexts unset.
        self.animate_menu = app_commands.guild_only()(
            app_commands.ContextMenu(name="Animate with Sora", callback=self.animate))
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.animate_menu)
        # Messages from before a restart keep their buttons working (the job or offer is in the custom id).
        self.bot.add_dynamic_items(JobButton, OfferButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton, OfferButton)
        self.bot.tree.remove_command(self.animate_menu.name, type=self.animate_menu.type)

    async def on_job_button(self, interaction: discord.Interaction[SoraBot], action: JobAction, job_id: str) -> None:
        """A job's button was pressed (bot.discord_app.items.JobButtonHandler)."""
        await self._guarded(interaction, self.actions.press(interaction, action, job_id))

    async def on_offer_button(self, interaction: discord.Interaction[SoraBot], offer_id: str,
                              accepted: bool) -> None:
        """Yes or No on a priced confirmation (bot.discord_app.items.JobButtonHandler)."""
        await self._guarded(interaction, self.actions.answer(interaction, offer_id, accepted))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[SoraBot]) -> None:
        """Our forms are sent without a copy in discord.py's memory (see _forms): their submits land here."""
        if interaction.type is not discord.InteractionType.modal_submit or interaction.data is None:
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        if custom_id.startswith((_forms.ANIMATE_FORM, _forms.EDIT_FORM, _forms.EXTEND_FORM)):
            await self._guarded(interaction, self.actions.submit(interaction, custom_id))

    async def _guarded(self, interaction: discord.Interaction[SoraBot], work: Awaitable[None]) -> None:
        """Run a button's or form's work; anything it raises gets the tree's one error answer (and log line)."""
        try:
            await work
        except Exception as exc:
            await self.bot.tree.report(interaction, exc)

    @app_commands.command(name="generate", description="Make a video from a prompt (and optionally a first frame)")
    @app_commands.describe(
        prompt="What the video should show (up to 5,000 characters)",
        duration="Length of the video; longer costs more",
        aspect_ratio="Landscape 16:9 or portrait 9:16",
        image="Optional first frame: JPEG, PNG or WebP, up to 10 MB",
    )
    @app_commands.choices(duration=DURATION_CHOICES)
    @app_commands.choices(aspect_ratio=RATIO_CHOICES)  # apart: one list's values are int, the other's str
    async def generate(
        self,
        interaction: discord.Interaction[SoraBot],
        prompt: app_commands.Range[str, 1, MAX_PROMPT_LENGTH],
        duration: app_commands.Choice[int] | None = None,
        aspect_ratio: app_commands.Choice[str] | None = None,
        image: discord.Attachment | None = None,
    ) -> None:
        source = ImageSource(image.url, image.size, image.filename) if image is not None else None
        await self.flow.start(interaction, prompt=prompt, duration=duration.value if duration else None,
                              aspect_ratio=aspect_ratio.value if aspect_ratio else None, image=source)

    async def animate(self, interaction: discord.Interaction[SoraBot], message: discord.Message) -> None:
        await self._guarded(interaction, self.actions.open_animate(interaction, message))

    @app_commands.command(name="balance", description="Your credits, what running jobs hold, and the next refill")
    async def balance(self, interaction: discord.Interaction[SoraBot]) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        roles = member_roles(interaction)
        balance = await self.bot.db.ledger.balance(interaction.guild_id, interaction.user.id, roles)
        settings = await self.bot.db.guilds.get(interaction.guild_id)
        found = await self.bot.db.tiers.for_member(interaction.guild_id, interaction.user.id, roles)
        lines = [f"You have **{balance.available} credits**."]
        if balance.held:
            lines.append(f"{balance.held} more are held by videos in progress (charged only when delivered).")
        lines.append(render.refill_text(found.refill_amount, settings.refill_period, balance.next_refill_at))
        lines.append(render.tier_text(found))
        await interaction.edit_original_response(content="\n".join(lines)[:2000])

    @app_commands.command(name="jobs", description="Your recent videos, with links to them")
    async def jobs(self, interaction: discord.Interaction[SoraBot]) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await self.bot.db.jobs.recent_for_user(interaction.guild_id, interaction.user.id, limit=10)
        await interaction.edit_original_response(content=render.jobs_text(jobs, await self._places(jobs)))

    async def _places(self, jobs: list[Job]) -> dict[str, tuple[int, float | None]]:
        """Each waiting job's place in the queue and estimated start."""
        runner, notifier = self.bot.runner, self.bot.notifier
        places: dict[str, tuple[int, float | None]] = {}
        for job in jobs:
            position = runner.slots.position(job.id) if runner is not None and job.state == "queued" else None
            if notifier is not None and position is not None:
                places[job.id] = (position, await notifier.queue.start_of(job, position))
        return places

    @app_commands.command(name="help", description="What this bot does, prices and limits")
    async def help(self, interaction: discord.Interaction[SoraBot]) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self.bot.db.tiers.for_member(interaction.guild_id, interaction.user.id,
                                                   member_roles(interaction))
        await interaction.edit_original_response(content=render.help_text(render.tier_text(found))[:2000])
