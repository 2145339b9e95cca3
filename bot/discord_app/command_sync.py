"""Register slash commands only when they differ from what Discord already has (command writes are capped)."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

_COMMAND_KEYS = ("name", "type", "description", "options", "default_member_permissions", "nsfw", "contexts")
_OPTION_KEYS = ("name", "type", "description", "required", "choices", "options", "min_value", "max_value",
                "min_length", "max_length", "channel_types", "autocomplete")


def _option(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: data.get(k) for k in _OPTION_KEYS}
    out["required"] = bool(out["required"])
    out["autocomplete"] = bool(out["autocomplete"])
    out["options"] = [_option(o) for o in data.get("options") or []]
    out["choices"] = [{"name": c["name"], "value": c["value"]} for c in data.get("choices") or []]
    out["channel_types"] = sorted(out["channel_types"] or [])
    return out


def canonical(data: dict[str, Any]) -> dict[str, Any]:
    """Reduce a command payload (ours or Discord's) to the fields that decide whether a re-sync is needed."""
    out = {k: data.get(k) for k in _COMMAND_KEYS}
    out["type"] = out["type"] or 1
    out["nsfw"] = bool(out["nsfw"])
    out["description"] = out["description"] or ""
    perms = out["default_member_permissions"]
    out["default_member_permissions"] = None if perms is None else str(perms)
    out["contexts"] = sorted(out["contexts"]) if out["contexts"] is not None else None
    out["options"] = [_option(o) for o in data.get("options") or []]
    return out


def _key(data: dict[str, Any]) -> tuple[int, str]:
    return (data["type"], data["name"])


async def commands_differ(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> bool:
    """Compare the tree's commands with the ones Discord holds (one GET, no writes)."""
    client = tree.client
    assert client.application_id is not None
    http = client.http
    if guild is None:
        remote = await http.get_global_commands(client.application_id)
    else:
        remote = await http.get_guild_commands(client.application_id, guild.id)
    local = [c.to_dict(tree) for c in tree.get_commands(guild=guild)]
    ours = sorted((canonical(c) for c in local), key=_key)
    theirs = sorted((canonical(dict(c)) for c in remote), key=_key)
    return ours != theirs


async def sync_if_changed(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> bool:
    """Sync only when the definitions changed; returns whether a write was made."""
    if not await commands_differ(tree, guild):
        log.info("commands unchanged; not syncing", extra={"guild": getattr(guild, "id", None)})
        return False
    synced = await tree.sync(guild=guild)
    log.info("commands synced", extra={"guild": getattr(guild, "id", None), "count": len(synced)})
    return True
