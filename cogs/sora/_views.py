"""Buttons and modals: the Re-roll button survives restarts because its job id lives in its custom_id."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.pricing import ASPECT_RATIOS, DURATIONS

if TYPE_CHECKING:
    from cogs.sora._flow import GenerationFlow, ImageSource


class RerollButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:reroll:(?P<job>[0-9a-f]{32})"):
    """Same request again, for whoever presses it, charged to them after a confirmation."""

    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", emoji="🎲", style=discord.ButtonStyle.secondary,
                                           custom_id=f"sora:reroll:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RerollButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        flow: GenerationFlow = interaction.client.flow  # type: ignore[attr-defined]
        await flow.offer_reroll(interaction, self.job_id)


class ConfirmReroll(discord.ui.View):
    """A private yes/no before anyone is charged for a re-roll."""

    def __init__(self, flow: GenerationFlow, job_id: str, user_id: int) -> None:
        super().__init__(timeout=300)
        self.flow, self.job_id, self.user_id = flow, job_id, user_id

    @discord.ui.button(label="Yes, make it", style=discord.ButtonStyle.primary)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await self.flow.reroll(interaction, self.job_id)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
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

    async def on_submit(self, interaction: discord.Interaction) -> None:
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

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await interaction.client.tree.on_error(interaction, error)  # type: ignore[arg-type]
