"""`sora-bot check`: is everything `run` needs in place? One line per check, a non-zero exit if not.

It exists so an operator (or a deploy script, or a container's start) can ask "will `run` work?" and trust the
exit code: a missing or refused Discord token fails it just as a refused API key or an unusable database does.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from yarl import URL

from bot.config import Settings
from bot.pricing import dollars
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import VideoAPIError
from storage.db import Database

DISCORD_API_BASE = "https://discord.com/api/v10"  # discord.py's own default; DISCORD_API_BASE overrides it
DISCORD_TIMEOUT = aiohttp.ClientTimeout(total=15)


async def run_checks(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Check configuration, the Discord token, the database file, the API key and the operator's balance.

    Every check runs (so one run names every problem); the exit code is 1 if any failed.
    """
    ok = True
    say(f"✓ configuration: API {settings.sora_api_base}, database {settings.database_label}")
    problem = await discord_token_problem(settings)
    if problem is None:
        say("✓ Discord accepted DISCORD_TOKEN")
    else:
        ok = False
        say(f"✗ {problem}")
    try:
        db = await Database.open(settings.database)
        await db.close()
        say(f"✓ database: {settings.database_label} is writable and up to date")
    except Exception as exc:
        ok = False
        say(f"✗ database: {settings.database_label}: {exc}")
    async with aiohttp.ClientSession() as session:
        api = VideoAPIClient(session, base_url=settings.sora_api_base, api_key=settings.sora_api_key.get_secret_value())
        try:
            credits = await api.get_credits()
        except VideoAPIError as exc:
            ok = False
            say(f"✗ video API at {settings.sora_api_base}: {exc.operator_hint} (code {exc.code})")
        else:
            say(f"✓ video API key works; operator balance {credits.balance} credits "
                f"(${dollars(credits.balance):,.2f})")
    return 0 if ok else 1


async def discord_token_problem(settings: Settings) -> str | None:
    """Why `run` could not log in to Discord (a sentence naming what to fix), or None when the token works.

    Asks Discord who the token belongs to (GET /users/@me, what discord.py's login does first), at
    DISCORD_API_BASE when set. The token is sent only there and never printed.
    """
    if settings.discord_token is None:
        return "DISCORD_TOKEN is not set: `run` and `sync` need the bot's token (Discord Developer Portal → Bot)"
    base = settings.discord_api_base or DISCORD_API_BASE
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}", "User-Agent": "sora-bot check"}
    try:
        async with (aiohttp.ClientSession(timeout=DISCORD_TIMEOUT) as session,
                    session.get(f"{base.rstrip('/')}/users/@me", headers=headers) as response):
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        host = URL(base).host or base
        return f"Discord at {host} could not be reached ({exc.__class__.__name__}): check the network or DISCORD_API_BASE"
    if status == 200:
        return None
    if status == 401:
        return "Discord refused the token: check DISCORD_TOKEN"
    return f"Discord answered HTTP {status} when checking the token: try again, or check DISCORD_API_BASE"
