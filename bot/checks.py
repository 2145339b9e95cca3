"""`sora-bot check`: is everything the bot needs in place? One line per check, a non-zero exit if not."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from bot.config import Settings
from bot.pricing import dollars
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import VideoAPIError
from storage.db import Database


async def run_checks(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Check configuration, the database file, the API key and the operator's balance."""
    ok = True
    say(f"✓ configuration: API {settings.sora_api_base}, database {settings.database_path}")
    if settings.discord_token is None:
        say("! DISCORD_TOKEN is not set: `run` and `sync` need it")
    try:
        db = await Database.open(settings.database_path)
        await db.close()
        say(f"✓ database: {settings.database_path} is writable and up to date")
    except Exception as exc:
        ok = False
        say(f"✗ database: {settings.database_path}: {exc}")
    async with aiohttp.ClientSession() as session:
        api = VideoAPIClient(session, base_url=settings.sora_api_base, api_key=settings.sora_api_key.get_secret_value())
        try:
            credits = await api.get_credits()
        except VideoAPIError as exc:
            ok = False
            say(f"✗ video API: {exc.user_message} (code {exc.code})")
        else:
            say(f"✓ video API key works; operator balance {credits.balance} credits "
                f"(${dollars(credits.balance):,.2f})")
    return 0 if ok else 1
