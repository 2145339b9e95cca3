"""One error path for every command: domain refusals become a private, friendly answer; bugs are logged."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app.render import refusal_text
from storage.errors import UserFacingError

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on my side. Nothing was charged; please try again in a moment."


def friendly_message(error: BaseException) -> str | None:
    """The sentence a member should read for a known error, or None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserFacingError):
        return refusal_text(error)
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


async def reply_ephemeral(interaction: discord.Interaction[SoraBot], text: str) -> None:
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

    async def interaction_check(self, interaction: discord.Interaction[SoraBot], /) -> bool:
        return interaction.guild_id is not None or interaction.type is discord.InteractionType.autocomplete

    async def on_error(self, interaction: discord.Interaction[SoraBot], error: app_commands.AppCommandError,
                       /) -> None:
        await self.report(interaction, error)

    async def report(self, interaction: discord.Interaction[SoraBot], error: BaseException) -> None:
        """Answer a failed command, modal or button: the friendly sentence, or INTERNAL_ERROR and a log line."""
        message = friendly_message(error)
        if message is None:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command failed", exc_info=error, extra={"command": command, "guild": interaction.guild_id})
            message = INTERNAL_ERROR
        await reply_ephemeral(interaction, message)
