"""Server admins' side: `/sora-admin`, for members with Manage Server only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.admin._cog import AdminCog

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

__all__ = ["setup"]


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(AdminCog(bot))
