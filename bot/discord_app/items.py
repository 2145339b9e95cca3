"""Persistent components: their ids carry the job, so a button keeps working after a restart.

Each `custom_id` prefix lives here once; the notifier (building and finding a post's button), the cog that
handles it and the tests all read it from here. The handler is the cog that registered the item: it is found
with `interaction.client.get_cog(...)` when pressed, so this module never imports cogs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import discord

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

REROLL_PREFIX = "sora:reroll:"
SORA_COG = "sora"  # the members' cog's name (cogs.sora), which handles the Re-roll button
JOB_ID = "[0-9a-f]{32}"


def reroll_id(job_id: str) -> str:
    """The Re-roll button's custom_id for a job's delivery post."""
    return f"{REROLL_PREFIX}{job_id}"


@runtime_checkable
class RerollHandler(Protocol):
    """What the cog named SORA_COG offers the button: a private confirmation before anyone is charged."""

    async def offer_reroll(self, interaction: discord.Interaction[SoraBot], job_id: str) -> None: ...


class RerollButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=re.escape(REROLL_PREFIX) + f"(?P<job>{JOB_ID})"):
    """Same request again, for whoever presses it, charged to them after a confirmation."""

    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", emoji="🎲", style=discord.ButtonStyle.secondary,
                                           custom_id=reroll_id(job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]  # discord.py's hooks take any client; ours is SoraBot
            cls, interaction: discord.Interaction[SoraBot], item: discord.ui.Item[Any], match: re.Match[str], /,
    ) -> RerollButton:
        del interaction, item  # the job id in the custom_id is all the button needs
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]  # as above
        handler = interaction.client.get_cog(SORA_COG)
        if not isinstance(handler, RerollHandler):  # the cog was unloaded between dispatch and now
            await interaction.response.send_message("Re-roll isn't available right now; try again later.",
                                                    ephemeral=True)
            return
        await handler.offer_reroll(interaction, self.job_id)
