"""Application command registration (global and per guild), as ``CommandTree.sync()`` uses it.

Commands keep their id across bulk overwrites (by name and type) and bump ``version`` when changed,
like Discord, so tests can tell a needless re-sync from a real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors
from .models import Command
from .rest import RECORD

if TYPE_CHECKING:
    from .server import FakeDiscord

P = "/api/v10/applications/{application_id}"


def _scope(fake: FakeDiscord, request: web.Request) -> int | None:
    if int(request.match_info["application_id"]) != fake.world.application_id:
        raise errors.DiscordError(403, 50001, "Missing Access")
    gid = request.match_info.get("guild_id")
    if gid is None:
        return None
    if int(gid) not in fake.world.guilds:
        raise errors.DiscordError(403, 50001, "Missing Access")
    return int(gid)


def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.invalid_form("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        raise errors.invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    ctype = int(body.get("type", 1))
    if ctype == 1 and not body.get("description"):
        raise errors.invalid_form("description", "BASE_TYPE_REQUIRED", "This field is required")
    return body


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The stored fields; Discord answers permissions as a string even when sent as a number."""
    perms = body.get("default_member_permissions")
    return {
        "type": int(body.get("type", 1)),
        "description": body.get("description") or "",
        "options": list(body.get("options") or []),
        "default_member_permissions": None if perms is None else str(perms),
        "dm_permission": body.get("dm_permission"),
        "contexts": body.get("contexts"),
        "integration_types": body.get("integration_types"),
        "nsfw": bool(body.get("nsfw", False)),
    }


def upsert(fake: FakeDiscord, scope: int | None, body: dict[str, Any]) -> tuple[Command, bool]:
    """Create or update one command by (name, type); returns (command, created)."""
    body = _validate(body)
    fields = _fields(body)
    for cmd in fake.commands_in(scope):
        if cmd.name == body["name"] and cmd.type == fields["type"]:
            changed = any(getattr(cmd, k) != v for k, v in fields.items())
            for key, value in fields.items():
                setattr(cmd, key, value)
            cmd.raw = dict(body)
            if changed:
                cmd.version = fake.ids.next()
            return cmd, False
    cmd = Command(
        id=fake.ids.next(),
        application_id=fake.world.application_id,
        guild_id=scope,
        name=body["name"],
        version=fake.ids.next(),
        raw=dict(body),
        **fields,
    )
    fake.world.commands[cmd.id] = cmd
    return cmd, True


def register(app: web.Application, fake: FakeDiscord) -> None:
    world = fake.world

    async def list_commands(request: web.Request) -> tuple[int, Any]:
        scope = _scope(fake, request)
        return 200, [world.command_payload(c) for c in fake.commands_in(scope)]

    async def bulk_overwrite(request: web.Request) -> tuple[int, Any]:
        scope = _scope(fake, request)
        body = request[RECORD].json
        if not isinstance(body, list):
            raise errors.invalid_form("_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        if len(body) > 100 + 15:
            raise errors.invalid_form("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        keep: set[int] = set()
        result = []
        for entry in body:
            cmd, _ = upsert(fake, scope, entry)
            keep.add(cmd.id)
            result.append(world.command_payload(cmd))
        for cmd in list(fake.commands_in(scope)):
            if cmd.id not in keep:
                del world.commands[cmd.id]
        fake.sync_count += 1
        return 200, result

    async def create(request: web.Request) -> tuple[int, Any]:
        scope = _scope(fake, request)
        cmd, created = upsert(fake, scope, request[RECORD].json)
        return (201 if created else 200), world.command_payload(cmd)

    def _get(request: web.Request) -> Command:
        scope = _scope(fake, request)
        cmd = world.commands.get(int(request.match_info["command_id"]))
        if cmd is None or cmd.guild_id != scope:
            raise errors.DiscordError(404, 10063, "Unknown application command")
        return cmd

    async def get_one(request: web.Request) -> tuple[int, Any]:
        return 200, world.command_payload(_get(request))

    async def edit(request: web.Request) -> tuple[int, Any]:
        cmd = _get(request)
        body = dict(cmd.raw)
        body.update(request[RECORD].json or {})
        body.setdefault("name", cmd.name)
        body.setdefault("type", cmd.type)
        cmd, _ = upsert(fake, cmd.guild_id, body)
        return 200, world.command_payload(cmd)

    async def delete(request: web.Request) -> tuple[int, Any]:
        cmd = _get(request)
        del world.commands[cmd.id]
        return 204, None

    for base in (f"{P}/commands", f"{P}/guilds/{{guild_id}}/commands"):
        app.router.add_get(base, list_commands)
        app.router.add_put(base, bulk_overwrite)
        app.router.add_post(base, create)
        app.router.add_get(base + "/{command_id}", get_one)
        app.router.add_patch(base + "/{command_id}", edit)
        app.router.add_delete(base + "/{command_id}", delete)
