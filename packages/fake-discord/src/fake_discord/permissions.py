"""Permission arithmetic the way Discord does it (base from roles, then channel overwrites).

The fake computes the member's and the bot's channel permissions itself so that the ``permissions`` and
``app_permissions`` it puts into interactions match what it enforces on REST calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord

from .models import Channel, Guild

ALL = discord.Permissions.all().value
ADMINISTRATOR = discord.Permissions(administrator=True).value
VIEW_CHANNEL = discord.Permissions(view_channel=True).value

#: What @everyone gets in a new server (a subset of Discord's defaults that matters here).
DEFAULT_EVERYONE = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    attach_files=True,
    embed_links=True,
    add_reactions=True,
    use_application_commands=True,
    use_external_emojis=True,
    create_public_threads=True,
    connect=True,
    speak=True,
).value

#: What the bot's managed role gets unless a test says otherwise.
DEFAULT_BOT = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    attach_files=True,
    embed_links=True,
    add_reactions=True,
    use_application_commands=True,
).value


def to_bits(value: Any) -> int:
    """Accept an int, a ``discord.Permissions`` or an iterable of permission names."""
    if value is None:
        return 0
    if isinstance(value, discord.Permissions):
        return value.value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = [value]
    return names_to_bits(value)


def names_to_bits(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        if name not in discord.Permissions.VALID_FLAGS:
            raise ValueError(f"unknown permission name {name!r}")
        bits |= discord.Permissions(**{name: True}).value
    return bits


def base_permissions(guild: Guild, user_id: int) -> int:
    """Guild-level permissions of a member: owner, @everyone, then its roles."""
    if user_id == guild.owner_id:
        return ALL
    everyone = guild.roles.get(guild.id)
    perms = everyone.permissions if everyone else 0
    member = guild.members.get(user_id)
    if member is not None:
        for role_id in member.roles:
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
    if perms & ADMINISTRATOR:
        return ALL
    return perms


def channel_permissions(guild: Guild, channel: Channel, user_id: int) -> int:
    """Permissions in a channel after @everyone, role and member overwrites (Discord's order)."""
    perms = base_permissions(guild, user_id)
    if perms == ALL and (user_id == guild.owner_id or perms & ADMINISTRATOR):
        return ALL
    everyone = channel.overwrites.get(guild.id)
    if everyone is not None:
        perms = (perms & ~everyone.deny) | everyone.allow
    member = guild.members.get(user_id)
    role_ids = set(member.roles) if member else set()
    allow = deny = 0
    for ow in channel.overwrites.values():
        if ow.type == 0 and ow.id in role_ids:
            allow |= ow.allow
            deny |= ow.deny
    perms = (perms & ~deny) | allow
    own = channel.overwrites.get(user_id)
    if own is not None and own.type == 1:
        perms = (perms & ~own.deny) | own.allow
    if not perms & VIEW_CHANNEL:
        return 0
    return perms


def has(perms: int, name: str) -> bool:
    return bool(perms & names_to_bits([name]))
