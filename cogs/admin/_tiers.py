"""`/sora-admin tiers set|remove|show`: what members with a role get instead of the server's defaults.

A mixin of AdminCog (so its Manage Server check and deferral apply, and `tiers` is a subgroup of
`/sora-admin`). A role Discord deletes takes its tier with it (`on_guild_role_delete`, audited as the bot);
`tiers show` also drops the tiers of roles deleted while the bot was away.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app.render import when
from storage.tiers import Tier, parse_durations

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

NOTHING_CHANGED = " Nothing was changed."


async def _private(interaction: discord.Interaction[SoraBot], text: str) -> None:
    await interaction.followup.send(text[:2000], ephemeral=True)


def audit_lines(entries: list[tuple[int, int | None, str, str, float]]) -> list[str]:
    """`config show`'s record of who changed which tier (newest first)."""
    lines = []
    for role_id, actor_id, action, detail, at in entries:
        who = f"<@{actor_id}>" if actor_id is not None else "the bot"
        what = f"set <@&{role_id}> to {detail}" if action == "set" else f"removed the tier of <@&{role_id}>"
        why = f" ({detail})" if action == "remove" and detail else ""
        lines.append(f"• {when(at)} {who} {what}{why}")
    return lines


class TierCommands(commands.Cog):
    """The `tiers` subgroup of `/sora-admin`: a base of AdminCog, whose group and checks it joins."""

    bot: SoraBot
    tiers = app_commands.Group(name="tiers", description="What members with a role get instead of the defaults")

    @tiers.command(name="set", description="Give a role its own refill, jobs at once and durations")
    @app_commands.describe(role="The role", refill="Balance its members are topped up to each refill period",
                           per_member="Jobs one of its members may run at once",
                           durations="Durations its members may choose, like 4,8")
    async def tiers_set(self, interaction: discord.Interaction[SoraBot], role: discord.Role,
                        refill: app_commands.Range[int, 0, 1_000_000] | None = None,
                        per_member: app_commands.Range[int, 1, 50] | None = None,
                        durations: app_commands.Range[str, 0, 20] | None = None) -> None:
        assert interaction.guild_id is not None
        try:
            allowed = parse_durations(durations) if durations is not None else None
            tier = await self.bot.db.tiers.set(interaction.guild_id, Tier(role.id, refill, per_member, allowed),
                                               interaction.user.id)
        except ValueError as exc:  # no duration at all, a length the model does not make, nothing to set
            await _private(interaction, f"{exc}{NOTHING_CHANGED}")
            return
        settings = await self.bot.db.guilds.get(interaction.guild_id)
        note = ("\nNote: this server does not refill credits yet (`/sora-admin config refill`), so the refill "
                "amount applies once it does." if refill is not None and settings.refill_period == "never" else "")
        await _private(interaction, f"Saved: members with {role.mention} get {tier.describe()}; anything not set "
                                    f"follows the server's settings.{note}")

    @tiers.command(name="remove", description="Remove a role's tier")
    @app_commands.describe(role="The role")
    async def tiers_remove(self, interaction: discord.Interaction[SoraBot], role: discord.Role) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.db.tiers.remove(interaction.guild_id, role.id, interaction.user.id)
        await _private(interaction, f"Removed the tier of {role.mention}; its members get the server's settings."
                       if removed else f"{role.mention} has no tier.{NOTHING_CHANGED}")

    @tiers.command(name="show", description="Every tier of this server")
    async def tiers_show(self, interaction: discord.Interaction[SoraBot]) -> None:
        assert interaction.guild_id is not None and interaction.guild is not None
        lines = []
        for tier in await self.bot.db.tiers.all(interaction.guild_id):
            if interaction.guild.get_role(tier.role_id) is None:  # deleted while the bot was away
                await self.bot.db.tiers.remove(interaction.guild_id, tier.role_id, None, "role deleted")
                lines.append(f"• a deleted role (id {tier.role_id}): its tier was removed")
            else:
                lines.append(f"• <@&{tier.role_id}>: {tier.describe()} (set by <@{tier.updated_by}> "
                             f"{when(tier.updated_at)})")
        if not lines:
            await _private(interaction, "No tiers: every member gets the server's settings. Add one with "
                                        "`/sora-admin tiers set`.")
            return
        await _private(interaction, "**Tiers** (a member with several gets the most generous of each; anything a "
                                    "tier does not set follows the server's settings)\n" + "\n".join(lines))

    @commands.Cog.listener()
    async def on_guild_role_delete(self, role: discord.Role) -> None:
        """A deleted role's tier goes with it, audited as the bot (members lose the role on Discord's side)."""
        if await self.bot.db.tiers.remove(role.guild.id, role.id, None, "role deleted"):
            log.info("removed the tier of a deleted role", extra={"guild": role.guild.id, "role": role.id})
