"""Members' side of the bot: generate, balance, jobs, help, Animate with Sora, Re-roll."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.sora._cog import SoraCog

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

__all__ = ["setup"]


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(SoraCog(bot))
