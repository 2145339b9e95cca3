"""`sora-bot check`: is everything the bot needs in place? One line per check, a non-zero exit if not."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from bot.config import Settings
from bot.pricing import dollars
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import VideoAPIError
from storage.db import Database

# What the operator (or a server admin reading /sora-admin status) should do; members read other words.
OPERATOR_HINTS = {
    "invalid_api_key": "the API key was refused (invalid, disabled or deleted): check SORA_API_KEY",
    "ip_not_allowed": "this machine's IP address is not in the API key's allowlist",
    "model_not_found": "the video model is not available to this API key",
    "insufficient_credits": "the operator's balance is too low: top up with the video API provider",
    "spend_limit_exceeded": "the API key's spending limit was reached",
    "rate_limit_exceeded": "the video API is rate limiting this key; try again in a minute",
    "network_error": "the video API could not be reached: check SORA_API_BASE and the network",
}


def operator_hint(error: VideoAPIError) -> str:
    """A sentence about an upstream failure for whoever can fix it (not the member-facing text)."""
    return OPERATOR_HINTS.get(error.code, error.user_message)


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
            say(f"✗ video API at {settings.sora_api_base}: {operator_hint(exc)} (code {exc.code})")
        else:
            say(f"✓ video API key works; operator balance {credits.balance} credits "
                f"(${dollars(credits.balance):,.2f})")
    return 0 if ok else 1
