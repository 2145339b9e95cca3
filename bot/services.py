"""What the bot and its cogs share, built once by the entry point and handed over (no module-level singletons)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from bot.config import Settings
from bot.ops.metrics import Metrics
from bot.upstream.client import VideoAPIClient
from storage.db import Database


@dataclass(frozen=True, slots=True)
class Services:
    """The settings and the open resources; `bot.app.open_services()` opens them and closes them in reverse."""

    settings: Settings
    db: Database
    api: VideoAPIClient
    session: aiohttp.ClientSession
    metrics: Metrics
