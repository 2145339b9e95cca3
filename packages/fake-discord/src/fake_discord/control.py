"""Test-side controls that play the Discord *user*: run a slash command, a context menu, press a button,
submit a modal, post a message.

Interactions are built from the commands the bot actually REGISTERED (so a renamed option or a missing
choice fails the test the way a real Discord client would refuse it), with every field discord.py needs:
a current snowflake id, token, version, application_id, attachment_size_limit, a member with roles,
flags, user and computed permissions, app_permissions, channel, locale, context, entitlements.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import permissions as perm
from .models import Channel, ChannelType, Command, InteractionRecord, Message, Role, StoredFile, User

if TYPE_CHECKING:
    from .server import FakeDiscord

FileSpec = tuple[str, bytes, str] | tuple[str, bytes] | StoredFile

SUBCOMMAND, GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


class InteractionError(ValueError):
    """What a real Discord client would refuse to send (unknown command/option, bad choice, missing value)."""


def _as_file(fake: FakeDiscord, spec: FileSpec) -> StoredFile:
    if isinstance(spec, StoredFile):
        return spec
    filename, data, *rest = spec
    return fake.world.store_file(filename, data, rest[0] if rest else None)


def _id_of(value: Any) -> int:
    return int(getattr(value, "id", value))


class Interactions:
    """Builds and dispatches interactions; mixed into :class:`FakeDiscord`."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.world = fake.world

    # ------------------------------------------------------------------ common parts
    def _context(self, guild_id: int | None, channel_id: int | None, user_id: int) -> dict[str, Any]:
        world = self.world
        user = world.users.get(user_id)
        if user is None:
            raise InteractionError(f"unknown user {user_id}; add it with fake.add_user()")
        if guild_id is None:
            channel = world.channels[channel_id] if channel_id is not None else world.dm_channel(user_id)
            return {
                "channel": channel,
                "user": user,
                "payload": {
                    "user": world.user_payload(user),
                    "context": 1,
                    "authorizing_integration_owners": {"0": str(world.application_id)},
                    "app_permissions": str(world.permissions_in(channel, world.bot.id)),
                    "attachment_size_limit": 10 * 1024 * 1024,
                },
            }
        guild = world.guilds.get(guild_id)
        if guild is None:
            raise InteractionError(f"unknown guild {guild_id}")
        if channel_id is None or channel_id not in guild.channels:
            raise InteractionError(f"channel {channel_id} is not in guild {guild_id}")
        channel = guild.channels[channel_id]
        member = guild.members.get(user_id)
        if member is None:
            raise InteractionError(f"user {user_id} is not a member of guild {guild_id}; use fake.add_member()")
        perms = world.permissions_in(channel, user_id)
        return {
            "channel": channel,
            "user": user,
            "payload": {
                "guild_id": str(guild.id),
                "guild_locale": guild.locale,
                "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
                "member": world.member_payload(member, permissions=perms),
                "context": 0,
                "authorizing_integration_owners": {"0": str(guild.id)},
                "app_permissions": str(world.permissions_in(channel, world.bot.id)),
                "attachment_size_limit": guild.filesize_limit,
            },
        }

    def _dispatch(
        self,
        itype: int,
        ctx: dict[str, Any],
        data: dict[str, Any],
        *,
        message: Message | None = None,
        locale: str = "en-US",
        issued_at: float | None = None,
    ) -> InteractionRecord:
        fake, world = self.fake, self.world
        channel: Channel = ctx["channel"]
        created = fake.clock.now() if issued_at is None else issued_at
        iid = fake.ids.next(at=created)
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        channel_payload = world.channel_payload(channel)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(world.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "channel_id": str(channel.id),
            "channel": channel_payload,
            "data": data,
            **ctx["payload"],
        }
        if "member" in payload:
            channel_payload["permissions"] = payload["member"]["permissions"]
        if message is not None:
            payload["message"] = world.message_payload(message)
        record = InteractionRecord(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            guild_id=channel.guild_id,
            channel_id=channel.id,
            user_id=ctx["user"].id,
            created_at=created,
            dispatched_at=time.monotonic(),
            fake=fake,
            message_id=message.id if message is not None else None,
        )
        if not fake.gateway.dispatch_interaction(payload) and fake.require_gateway:
            raise InteractionError("no bot is connected to the gateway (or its session was closed)")
        fake.interactions[iid] = record
        fake.interactions_by_token[token] = record
        fake.notify()
        return record

    # ------------------------------------------------------------------ slash commands
    def _find_command(self, name: str, ctype: int, guild_id: int | None) -> Command:
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for cmd in self.fake.commands_in(scope):
                if cmd.name == name and cmd.type == ctype:
                    return cmd
        known = sorted(f"{c.name}(type {c.type}, guild {c.guild_id})" for c in self.world.commands.values())
        raise InteractionError(f"no registered command {name!r} of type {ctype}; registered: {known}")

    def _check_visible(self, cmd: Command, guild_id: int | None, user_id: int, bypass_permissions: bool) -> None:
        """A Discord client only offers commands usable here: contexts, and default_member_permissions
        unless the server's admins overrode them (``bypass_permissions=True``)."""
        contexts = cmd.contexts
        if guild_id is None and (cmd.dm_permission is False or (contexts is not None and 1 not in contexts)):
            raise InteractionError(f"command {cmd.name!r} is not available in DMs")
        if guild_id is not None and contexts is not None and 0 not in contexts:
            raise InteractionError(f"command {cmd.name!r} is not available in guilds")
        required = int(cmd.default_member_permissions) if cmd.default_member_permissions is not None else 0
        if guild_id is None or bypass_permissions or cmd.default_member_permissions is None:
            return
        have = self.world.guild_permissions(guild_id, user_id)
        if (required == 0 or have & required != required) and not have & perm.ADMINISTRATOR:
            raise InteractionError(
                f"user {user_id} lacks default_member_permissions {required} of {cmd.name!r}; a Discord client "
                "would not offer it (pass bypass_permissions=True to simulate an admin override)"
            )

    def _option_value(self, opt: dict[str, Any], value: Any, resolved: dict[str, Any], guild_id: int | None,
                      ignore_bounds: bool = False) -> Any:
        world = self.world
        otype, name = opt["type"], opt["name"]
        if otype == STRING:
            if not isinstance(value, str):
                raise InteractionError(f"option {name!r} takes a string, got {value!r}")
            if len(value) < opt.get("min_length", 0) or len(value) > opt.get("max_length", 6000):
                raise InteractionError(f"option {name!r}: length {len(value)} outside the declared bounds")
        elif otype in (INTEGER, NUMBER) and ignore_bounds:
            pass  # a hostile client: Discord passes the number on as JSON, whatever its size or kind
        elif otype in (INTEGER, NUMBER):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (otype == INTEGER and int(value) != value)
            ):
                raise InteractionError(f"option {name!r} takes {'an integer' if otype == INTEGER else 'a number'}")
            if ("min_value" in opt and value < opt["min_value"]) or ("max_value" in opt and value > opt["max_value"]):
                raise InteractionError(f"option {name!r}: {value} outside the declared bounds")
            value = int(value) if otype == INTEGER else value
        elif otype == BOOLEAN:
            if not isinstance(value, bool):
                raise InteractionError(f"option {name!r} takes a boolean")
        elif otype in (USER, MENTIONABLE) and not isinstance(value, Role):
            uid = _id_of(value)
            if uid not in world.users:
                raise InteractionError(f"option {name!r}: unknown user {uid}")
            resolved.setdefault("users", {})[str(uid)] = world.user_payload(uid)
            guild = world.guilds.get(guild_id or 0)
            if guild is not None and uid in guild.members:
                member = world.member_payload(guild.members[uid], permissions=world.guild_permissions(guild.id, uid))
                member.pop("user")
                resolved.setdefault("members", {})[str(uid)] = member
            value = str(uid)
        elif otype in (ROLE, MENTIONABLE):
            rid = _id_of(value)
            guild = world.guilds.get(guild_id or 0)
            if guild is None or rid not in guild.roles:
                raise InteractionError(f"option {name!r}: unknown role {rid}")
            resolved.setdefault("roles", {})[str(rid)] = world.role_payload(guild.roles[rid])
            value = str(rid)
        elif otype == CHANNEL:
            cid = _id_of(value)
            channel = world.channels.get(cid)
            if channel is None:
                raise InteractionError(f"option {name!r}: unknown channel {cid}")
            allowed = opt.get("channel_types")
            if allowed and channel.type not in allowed:
                raise InteractionError(f"option {name!r}: channel type {channel.type} not in {allowed}")
            resolved.setdefault("channels", {})[str(cid)] = {
                "id": str(cid),
                "name": channel.name,
                "type": channel.type,
                "permissions": str(world.permissions_in(channel, world.bot.id)),
                "parent_id": None,
            }
            value = str(cid)
        elif otype == ATTACHMENT:
            stored = _as_file(self.fake, value)
            resolved.setdefault("attachments", {})[str(stored.id)] = world.attachment_payload(stored, ephemeral=True)
            value = str(stored.id)
        choices = opt.get("choices")
        if choices and otype in (STRING, INTEGER, NUMBER) and value not in [c["value"] for c in choices]:
            raise InteractionError(f"option {name!r}: {value!r} is not one of the choices {choices}")
        return value

    def _build_options(
        self,
        declared: list[dict[str, Any]],
        path: list[str],
        values: Mapping[str, Any],
        resolved: dict[str, Any],
        guild_id: int | None,
        ignore_bounds: bool = False,
    ) -> list[dict[str, Any]]:
        if path:
            for opt in declared:
                if opt["name"] == path[0] and opt["type"] in (SUBCOMMAND, GROUP):
                    inner = self._build_options(opt.get("options") or [], path[1:], values, resolved, guild_id,
                                                ignore_bounds)
                    return [{"name": opt["name"], "type": opt["type"], "options": inner}]
            raise InteractionError(f"no subcommand or group {path[0]!r}; declared: {[o['name'] for o in declared]}")
        if any(o["type"] in (SUBCOMMAND, GROUP) for o in declared):
            raise InteractionError(f"a subcommand is required: {[o['name'] for o in declared]}")
        by_name = {o["name"]: o for o in declared}
        unknown = set(values) - set(by_name)
        if unknown:
            raise InteractionError(f"unknown options {sorted(unknown)}; declared: {sorted(by_name)}")
        missing = [o["name"] for o in declared if o.get("required") and o["name"] not in values]
        if missing:
            raise InteractionError(f"required options missing: {missing}")
        out = []
        for opt in declared:  # Discord sends options in declaration order
            if opt["name"] in values:
                value = self._option_value(opt, values[opt["name"]], resolved, guild_id, ignore_bounds)
                out.append({"name": opt["name"], "type": opt["type"], "value": value})
        return out

    async def slash(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        command: str,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, FileSpec] | None = None,
        *,
        locale: str = "en-US",
        issued_at: float | None = None,
        bypass_permissions: bool = False,
        ignore_bounds: bool = False,
    ) -> InteractionRecord:
        """Run ``/command [group] [subcommand]`` as ``user_id`` and return its :class:`InteractionRecord`.

        ``ignore_bounds=True`` sends integer and number options as given (2**63, 1.5), as a client that ignores
        the registered min/max and type can: Discord's API does not enforce them on what reaches the bot.
        """
        parts = command.strip().lstrip("/").split()
        ctx = self._context(guild_id, channel_id, _id_of(user_id))
        cmd = self._find_command(parts[0], 1, guild_id)
        self._check_visible(cmd, guild_id, _id_of(user_id), bypass_permissions)
        values: dict[str, Any] = dict(options or {})
        values.update(attachments or {})
        resolved: dict[str, Any] = {}
        built = self._build_options(cmd.options, parts[1:], values, resolved, guild_id, ignore_bounds)
        data: dict[str, Any] = {"id": str(cmd.id), "name": cmd.name, "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        return self._dispatch(2, ctx, data, locale=locale, issued_at=issued_at)

    async def context_menu(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        name: str,
        target: Message | User | int,
        *,
        locale: str = "en-US",
        issued_at: float | None = None,
        bypass_permissions: bool = False,
    ) -> InteractionRecord:
        """Run a message (target Message/id) or user (target User) context-menu command."""
        ctx = self._context(guild_id, channel_id, _id_of(user_id))
        world = self.world
        if isinstance(target, User):
            cmd = self._find_command(name, 2, guild_id)
            self._check_visible(cmd, guild_id, _id_of(user_id), bypass_permissions)
            resolved: dict[str, Any] = {"users": {str(target.id): world.user_payload(target)}}
            guild = world.guilds.get(guild_id or 0)
            if guild is not None and target.id in guild.members:
                member = world.member_payload(guild.members[target.id], permissions=0)
                member.pop("user")
                resolved["members"] = {str(target.id): member}
            target_id = target.id
        else:
            cmd = self._find_command(name, 3, guild_id)
            self._check_visible(cmd, guild_id, _id_of(user_id), bypass_permissions)
            message = world.messages_by_id.get(_id_of(target))
            if message is None:
                raise InteractionError(f"unknown target message {target!r}")
            resolved = {"messages": {str(message.id): world.message_payload(message)}}
            target_id = message.id
        data = {
            "id": str(cmd.id),
            "name": cmd.name,
            "type": cmd.type,
            "target_id": str(target_id),
            "resolved": resolved,
        }
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        return self._dispatch(2, ctx, data, locale=locale, issued_at=issued_at)

    # ------------------------------------------------------------------ components and modals
    @staticmethod
    def _walk(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for comp in components:
            yield comp
            yield from Interactions._walk(comp.get("components") or [])
            for key in ("component", "accessory"):
                if isinstance(comp.get(key), dict):
                    yield from Interactions._walk([comp[key]])

    async def press_button(
        self,
        message: Message | int,
        custom_id: str,
        user_id: int,
        *,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        """Click a button (or choose ``values`` in a select) on a message the bot sent."""
        msg = self.world.messages_by_id.get(_id_of(message))
        if msg is None or msg.deleted:
            raise InteractionError(f"unknown message {message!r}")
        comp = next((c for c in self._walk(msg.components) if c.get("custom_id") == custom_id), None)
        if comp is None:
            ids = [c.get("custom_id") for c in self._walk(msg.components) if c.get("custom_id")]
            raise InteractionError(f"message {msg.id} has no component {custom_id!r}; it has {ids}")
        if comp.get("disabled"):
            raise InteractionError(f"component {custom_id!r} is disabled")
        if msg.ephemeral:
            source = self.fake.interactions.get(msg.interaction_id or 0)
            owner = source.user_id if source is not None else None
            if owner != _id_of(user_id):
                raise InteractionError(
                    f"message {msg.id} is ephemeral: only its recipient ({owner}) sees it, so only they can press "
                    f"{custom_id!r}")
        ctx = self._context(msg.guild_id, msg.channel_id, _id_of(user_id))
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if comp["type"] != 2:
            data["values"] = list(values or [])
        return self._dispatch(3, ctx, data, message=msg)

    def _submit_components(self, components: list[dict[str, Any]], values: dict[str, Any], used: set[str]) -> list[Any]:
        out: list[dict[str, Any]] = []
        for comp in components:
            ctype = comp.get("type")
            if ctype == 1:
                out.append(
                    {"type": 1, "components": self._submit_components(comp.get("components") or [], values, used)}
                )
            elif ctype == 18 and isinstance(comp.get("component"), dict):
                inner = self._submit_components([comp["component"]], values, used)
                if inner:
                    out.append({"type": 18, "component": inner[0]})
            elif ctype == 4:
                cid = comp["custom_id"]
                value = values.get(cid, comp.get("value") or "")
                used.add(cid)
                if not isinstance(value, str):
                    raise InteractionError(f"text input {cid!r} takes a string")
                if comp.get("required", True) and not value:
                    raise InteractionError(f"text input {cid!r} is required")
                if value and not comp.get("min_length", 0) <= len(value) <= comp.get("max_length", 4000):
                    raise InteractionError(f"text input {cid!r}: length {len(value)} outside its bounds")
                out.append({"type": 4, "custom_id": cid, "value": value})
            elif ctype in (3, 5, 6, 7, 8):
                out.append({"type": ctype, "custom_id": comp["custom_id"], "values": self._chosen(comp, values, used)})
        return out

    _forged = False  # submit_modal(ignore_choices=True) in progress

    def _chosen(self, comp: dict[str, Any], values: dict[str, Any], used: set[str]) -> list[str]:
        """What a member can pick in a modal's select: only its options (for a string select), between
        min_values and max_values of them; left alone, the options marked default, as a Discord client shows."""
        cid = comp["custom_id"]
        used.add(cid)
        options = [str(o.get("value")) for o in comp.get("options") or []]
        if cid in values:
            chosen = values[cid]
            picked = [chosen] if isinstance(chosen, str) else [str(v) for v in chosen]
        else:
            picked = [str(o.get("value")) for o in comp.get("options") or [] if o.get("default")]
        if self._forged:
            return picked
        if comp.get("type") == 3 and any(v not in options for v in picked):
            raise InteractionError(f"select {cid!r} offers only {options}, not {picked}")
        low, high = int(comp.get("min_values", 1)), int(comp.get("max_values", 1))
        if not picked and comp.get("required", True) and low > 0:
            raise InteractionError(f"select {cid!r} is required")
        if picked and not low <= len(picked) <= high:
            raise InteractionError(f"select {cid!r} takes {low}..{high} choices, not {len(picked)}")
        return picked

    async def submit_modal(
        self,
        source: InteractionRecord,
        values: Mapping[str, Any],
        user_id: int | None = None,
        *,
        ignore_choices: bool = False,
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in response to ``source`` (by input custom_id).

        A select takes only its options (as a Discord client offers them); ``ignore_choices=True`` sends
        whatever is given, as a forged request could, to test the bot's own check.
        """
        modal = source.modal
        if modal is None:
            raise InteractionError(f"interaction {source.id} was not answered with a modal")
        uid = source.user_id if user_id is None else _id_of(user_id)
        message = self.world.messages_by_id.get(source.message_id or 0)
        used: set[str] = set()
        self._forged = ignore_choices
        try:
            components = self._submit_components(modal.get("components") or [], dict(values), used)
        finally:
            self._forged = False
        unknown = set(values) - used
        if unknown:
            raise InteractionError(f"the modal has no inputs {sorted(unknown)}")
        ctx = self._context(source.guild_id, source.channel_id, uid)
        data = {"custom_id": modal["custom_id"], "components": components}
        return self._dispatch(5, ctx, data, message=message)

    # ------------------------------------------------------------------ user messages
    def post_user_message(
        self,
        channel_id: int,
        user_id: int,
        content: str = "",
        attachments: Iterable[FileSpec] = (),
        *,
        embeds: Iterable[dict[str, Any]] = (),
        forward: Message | None = None,
    ) -> Message:
        """A message written by a user (e.g. the target of a message command).

        ``embeds`` are stored as given (a link preview: ``{"image": {"url": …, "proxy_url": …}}``, where
        ``url`` is the member's link and ``proxy_url`` Discord's copy; see :meth:`media_proxy_url`).
        ``forward`` makes it a forward of that message: a ``message_reference`` of type 1 and a frozen
        copy of the message in ``message_snapshots``, as Discord sends it.
        """
        import copy

        from .messages import new_message

        channel = self.world.channels[channel_id]
        if channel.type == ChannelType.dm and channel.recipient_id != user_id:
            raise InteractionError("only the DM's recipient can post in it")
        files = [_as_file(self.fake, spec) for spec in attachments]
        body: dict[str, Any] = {"content": content, "embeds": [dict(e) for e in embeds]}
        snapshots: list[Message] = []
        if forward is not None:
            body["message_reference"] = {"type": 1, "message_id": str(forward.id),
                                         "channel_id": str(forward.channel_id)}
            if forward.guild_id is not None:
                body["message_reference"]["guild_id"] = str(forward.guild_id)
            snapshots = [copy.copy(forward)]
        return new_message(self.fake, channel, _id_of(user_id), body, files, snapshots=snapshots)

    def media_proxy_url(self, filename: str, data: bytes, content_type: str | None = None) -> str:
        """Store an image the way Discord's media proxy keeps a copy of a linked picture, and return the
        ``proxy_url`` an embed would carry for it (served by this fake, like attachments)."""
        stored = self.world.store_file(filename, data, content_type)
        return str(self.world.attachment_payload(stored)["url"])
