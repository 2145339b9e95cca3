"""Server admins' side: `/sora-admin`, for members with Manage Server only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import SoraBot


async def setup(bot: SoraBot) -> None:
    from cogs.admin._cog import AdminCog

    await bot.add_cog(AdminCog(bot))
