"""A local Discord (REST API v10 + Gateway) that the real, unmodified discord.py connects to.

See docs/FAKE_DISCORD.md for the control API.
"""

from __future__ import annotations

from .control import InteractionError
from .errors import DiscordError
from .gateway import shard_of
from .models import (
    CallbackRecord,
    Channel,
    ChannelType,
    Command,
    Guild,
    InteractionRecord,
    Member,
    Message,
    Part,
    RequestRecord,
    Role,
    StoredFile,
    User,
)
from .server import DEFAULT_TOKEN, FakeDiscord, patch_discord_py
from .snowflake import snowflake_time

__all__ = [
    "DEFAULT_TOKEN",
    "CallbackRecord",
    "Channel",
    "ChannelType",
    "Command",
    "DiscordError",
    "FakeDiscord",
    "Guild",
    "InteractionError",
    "InteractionRecord",
    "Member",
    "Message",
    "Part",
    "RequestRecord",
    "Role",
    "StoredFile",
    "User",
    "patch_discord_py",
    "shard_of",
    "snowflake_time",
]
