"""The members' cog's own views: the Re-roll confirmation and the Animate with Sora form.

The persistent Re-roll button itself is shared with the notifier that posts it: bot.discord_app.items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.pricing import ASPECT_RATIOS, DURATIONS

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot
    from cogs.sora._flow import GenerationFlow, ImageSource

# discord.py types its hooks for any client (a type variable of each method), so a hook that knows it runs in
# SoraBot narrows the interaction's type: mypy's [override] is silenced on those lines, and only there.


class ConfirmReroll(discord.ui.View):
    """A private yes/no before anyone is charged for a re-roll."""

    def __init__(self, flow: GenerationFlow, job_id: str, user_id: int) -> None:
        super().__init__(timeout=300)
        self.flow, self.job_id, self.user_id = flow, job_id, user_id

    @discord.ui.button(label="Yes, make it", style=discord.ButtonStyle.primary)
    async def confirm(self, interaction: discord.Interaction[SoraBot], button: discord.ui.Button[Any]) -> None:
        self.stop()
        await self.flow.reroll(interaction, self.job_id)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction[SoraBot], button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Cancelled; nothing was charged.", view=None)


class AnimateModal(discord.ui.Modal, title="Animate with Sora"):
    """Ask for the prompt, duration and shape of a video made from a message's image."""

    prompt: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label="Prompt", style=discord.TextStyle.paragraph, min_length=1, max_length=4000, custom_id="prompt",
        placeholder="What should happen in the video?",
    )
    duration: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label="Duration in seconds (4, 8 or 12)", min_length=1, max_length=2, required=False, custom_id="duration",
    )
    aspect_ratio: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label="Aspect ratio (16:9 or 9:16)", min_length=4, max_length=4, required=False, default="16:9",
        custom_id="aspect_ratio",
    )

    def __init__(self, flow: GenerationFlow, image: ImageSource, default_duration: int) -> None:
        super().__init__(timeout=900)
        self.flow, self.image = flow, image
        self.duration.default = str(default_duration)

    async def on_submit(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]
        raw_duration = (self.duration.value or "").strip().removesuffix("s").strip()
        raw_ratio = (self.aspect_ratio.value or "16:9").strip()
        problems = []
        if raw_duration and (not raw_duration.isdigit() or int(raw_duration) not in DURATIONS):
            problems.append("Duration must be 4, 8 or 12 seconds.")
        if raw_ratio not in ASPECT_RATIOS:
            problems.append("Aspect ratio must be 16:9 or 9:16.")
        if problems:
            await interaction.response.send_message(" ".join(problems) + " Nothing was charged.", ephemeral=True)
            return
        await self.flow.start(interaction, prompt=self.prompt.value, duration=int(raw_duration) if raw_duration
                              else None, aspect_ratio=raw_ratio, image=self.image)

    async def on_error(  # type: ignore[override]
            self, interaction: discord.Interaction[SoraBot], error: Exception, /) -> None:
        await interaction.client.tree.report(interaction, error)
