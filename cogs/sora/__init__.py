"""Members' side of the bot: generate, balance, jobs, help, Animate with Sora, Re-roll."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.sora._notifier import DiscordNotifier
from cogs.sora._views import RerollButton

if TYPE_CHECKING:
    from bot.discord_bot import SoraBot

__all__ = ["DiscordNotifier", "setup"]


async def setup(bot: SoraBot) -> None:
    from cogs.sora._cog import SoraCog

    bot.add_dynamic_items(RerollButton)
    await bot.add_cog(SoraCog(bot))
