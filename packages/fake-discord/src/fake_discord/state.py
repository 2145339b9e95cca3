"""The fake's world (guilds, channels, members, messages, commands) and its JSON views.

Everything discord.py parses is built here, so the shapes live in one place: GUILD_CREATE needs roles
(the @everyone role's id is the guild id), channels with overwrites and the bot's own member, or
discord.py cannot compute ``channel.permissions_for(guild.me)``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import io
import mimetypes
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from . import permissions as perm
from .faults import HoldRule
from .models import Channel, ChannelType, Command, Guild, Member, Message, RequestRecord, Role, StoredFile, User
from .rules import Pings
from .snowflake import Clock, SnowflakeFactory


def iso(ts: float | None) -> str | None:
    """ISO-8601 timestamps as Discord writes them."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height for image uploads (Discord reports them), if Pillow can read the bytes."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:
        return None, None


def guess_type(filename: str, fallback: str | None = None) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or fallback or "application/octet-stream"


class DiscordWorld:
    """All state of the fake Discord, plus helpers to render it as API payloads."""

    def __init__(self, clock: Clock, ids: SnowflakeFactory, bot_name: str = "Test Bot") -> None:
        self.clock = clock
        self.ids = ids
        self.base_url = ""  # http://127.0.0.1:PORT, set when the server starts
        self.application_id = ids.next()
        self.bot = User(id=self.application_id, name=bot_name, bot=True)
        self.owner = User(id=ids.next(), name="app-owner")
        self.users: dict[int, User] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, list[Message]] = {}  # per channel, creation order
        self.messages_by_id: dict[int, Message] = {}
        self.files: dict[int, StoredFile] = {}
        self.commands: dict[int, Command] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        #: Refused requests as Discord counts them toward its 10,000 invalid requests per 10 minutes
        #: (401, 403, and 429 except ``X-RateLimit-Scope: shared``); filled by the REST middleware.
        self.invalid_requests: list[RequestRecord] = []
        #: Message creates whose answer is withheld after the message exists (see ``faults.hold_creates``).
        self.held_creates: list[HoldRule] = []
        #: How long a create with ``enforce_nonce`` returns the earlier message with the same nonce
        #: (Discord: "the past few minutes").
        self.nonce_window = 120.0
        #: Attachment links are signed and expire like Discord's CDN links (``ex`` is ~24 h after issue); a
        #: message or interaction fetched again carries freshly signed links.
        self.attachment_url_lifetime = 24 * 3600.0
        self._cdn_key = secrets.token_bytes(16)
        self._link_times: dict[int, tuple[int, int]] = {}  # file id -> (is, ex) of its current link

    # ------------------------------------------------------------------ world building
    def add_user(self, name: str, bot: bool = False, dms_blocked: bool = False) -> User:
        user = User(id=self.ids.next(), name=name, bot=bot, dms_blocked=dms_blocked)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        owner_id: int | None,
        filesize_limit: int,
        everyone_permissions: int,
        bot_permissions: int,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        if owner_id is None:
            owner_id = self.add_user(f"{name}-owner").id
        gid = self.ids.next()
        if shard is not None:  # an id whose timestamp (a millisecond or a few ahead) puts it on that shard
            shard_id, count = shard
            now = self.clock.now()
            gid = next(g for k in range(count) if ((g := self.ids.next(at=now + k / 1000)) >> 22) % count == shard_id)
        guild = Guild(id=gid, name=name, owner_id=owner_id, filesize_limit=filesize_limit)
        guild.roles[gid] = Role(id=gid, guild_id=gid, name="@everyone", permissions=everyone_permissions)
        bot_role = Role(
            id=self.ids.next(), guild_id=gid, name=self.bot.name, permissions=bot_permissions, position=1, managed=True
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot.id] = Member(guild_id=gid, user_id=self.bot.id, roles=[bot_role.id])
        guild.members[owner_id] = Member(guild_id=gid, user_id=owner_id)
        self.guilds[gid] = guild
        return guild

    def add_role(self, guild_id: int, name: str, permissions: int) -> Role:
        guild = self.guilds[guild_id]
        role = Role(
            id=self.ids.next(), guild_id=guild_id, name=name, permissions=permissions, position=len(guild.roles)
        )
        guild.roles[role.id] = role
        return role

    def add_channel(self, guild_id: int, name: str, type: int = ChannelType.text) -> Channel:
        guild = self.guilds[guild_id]
        channel = Channel(
            id=self.ids.next(), name=name, type=int(type), guild_id=guild_id, position=len(guild.channels)
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def add_member(self, guild_id: int, user_id: int, permissions: int, roles: list[int]) -> Member:
        guild = self.guilds[guild_id]
        role_ids = list(roles)
        if permissions:
            role = self.add_role(guild_id, f"perms-{user_id}", permissions)
            role_ids.append(role.id)
        member = guild.members.get(user_id)
        if member is None:
            member = Member(guild_id=guild_id, user_id=user_id, roles=role_ids)
            guild.members[user_id] = member
        else:
            member.roles.extend(r for r in role_ids if r not in member.roles)
        return member

    def dm_channel(self, user_id: int) -> Channel:
        channel_id = self.dm_channels.get(user_id)
        if channel_id is not None:
            return self.channels[channel_id]
        channel = Channel(id=self.ids.next(), name="", type=ChannelType.dm, recipient_id=user_id)
        self.channels[channel.id] = channel
        self.dm_channels[user_id] = channel.id
        return channel

    def store_file(self, filename: str, data: bytes, content_type: str | None = None) -> StoredFile:
        ctype = content_type if content_type and content_type != "application/octet-stream" else guess_type(filename)
        width, height = image_size(data) if ctype.startswith("image/") else (None, None)
        stored = StoredFile(
            id=self.ids.next(), filename=filename, data=data, content_type=ctype, width=width, height=height
        )
        self.files[stored.id] = stored
        return stored

    def add_message(self, message: Message) -> Message:
        self.messages.setdefault(message.channel_id, []).append(message)
        self.messages_by_id[message.id] = message
        channel = self.channels.get(message.channel_id)
        if channel is not None:
            channel.last_message_id = message.id
        return message

    # ------------------------------------------------------------------ permissions
    def permissions_in(self, channel: Channel, user_id: int) -> int:
        if channel.guild_id is None:
            return perm.DEFAULT_BOT
        return perm.channel_permissions(self.guilds[channel.guild_id], channel, user_id)

    def guild_permissions(self, guild_id: int, user_id: int) -> int:
        return perm.base_permissions(self.guilds[guild_id], user_id)

    # ------------------------------------------------------------------ payloads
    def user_payload(self, user: User | int) -> dict[str, Any]:
        if isinstance(user, int):
            user = self.users.get(user) or User(id=user, name=f"user-{user}")
        return {
            "id": str(user.id),
            "username": user.name,
            "global_name": None if user.bot else user.name,
            "discriminator": "0",
            "avatar": None,
            "bot": user.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }

    def role_payload(self, role: Role) -> dict[str, Any]:
        return {
            "id": str(role.id),
            "name": role.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": role.position,
            "permissions": str(role.permissions),
            "managed": role.managed,
            "mentionable": False,
            "flags": 0,
            **({"tags": {"bot_id": str(self.bot.id)}} if role.managed else {}),
        }

    def channel_payload(self, channel: Channel) -> dict[str, Any]:
        if channel.type == ChannelType.dm:
            return {
                "id": str(channel.id),
                "type": 1,
                "last_message_id": str(channel.last_message_id) if channel.last_message_id else None,
                "recipients": [self.user_payload(channel.recipient_id or 0)],
                "flags": 0,
            }
        payload: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites.values()
            ],
            "parent_id": None,
            "flags": 0,
        }
        if channel.type in (ChannelType.text, ChannelType.news):
            payload.update(
                topic=None,
                nsfw=False,
                rate_limit_per_user=0,
                last_message_id=str(channel.last_message_id) if channel.last_message_id else None,
            )
        if channel.type == ChannelType.voice:
            payload.update(bitrate=64000, user_limit=0, rtc_region=None, nsfw=False, rate_limit_per_user=0)
        return payload

    def member_payload(self, member: Member, permissions: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "user": self.user_payload(member.user_id),
            "roles": [str(r) for r in member.roles],
            "joined_at": iso(member.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
            "avatar_decoration_data": None,
        }
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload

    def guild_payload(self, guild: Guild, full: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self.role_payload(r) for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
        }
        if full:
            payload.update(
                joined_at=iso(guild.members[self.bot.id].joined_at) if self.bot.id in guild.members else None,
                large=False,
                unavailable=False,
                member_count=len(guild.members),
                voice_states=[],
                members=[self.member_payload(m) for m in guild.members.values()],
                channels=[self.channel_payload(c) for c in guild.channels.values() if not c.deleted],
                threads=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
            )
        return payload

    def sign(self, file_id: int, ex: int, issued: int) -> str:
        """The ``hm`` of a CDN link: only links this Discord issued (and did not alter) are served."""
        msg = f"{file_id}:{ex:x}:{issued:x}".encode()
        return hmac.new(self._cdn_key, msg, hashlib.sha256).hexdigest()

    def signed_url_valid(self, file_id: int, query: Mapping[str, str]) -> bool:
        """Whether ``?ex=&is=&hm=`` is this Discord's own signature and ``ex`` (hex unix time) has not passed."""
        try:
            ex, issued = int(query["ex"], 16), int(query["is"], 16)
        except (KeyError, ValueError):
            return False
        return hmac.compare_digest(query.get("hm", ""), self.sign(file_id, ex, issued)) and self.clock.now() < ex

    def attachment_payload(self, stored: StoredFile, ephemeral: bool = False) -> dict[str, Any]:
        now = self.clock.now()
        issued, ex = self._link_times.get(stored.id, (0, 0))
        if now >= ex:  # like Discord: the same link until it expires, then a freshly signed one
            issued = int(now)
            ex = issued + int(self.attachment_url_lifetime)
            self._link_times[stored.id] = (issued, ex)
        hm = self.sign(stored.id, ex, issued)
        url = f"{self.base_url}/attachments/{stored.id}/{quote(stored.filename)}?ex={ex:x}&is={issued:x}&hm={hm}"
        payload: dict[str, Any] = {
            "id": str(stored.id),
            "filename": stored.filename,
            "size": stored.size,
            "url": url,
            "proxy_url": url,
            "content_type": stored.content_type,
        }
        if stored.width is not None:
            payload.update(width=stored.width, height=stored.height)
        if ephemeral:
            payload["ephemeral"] = True
        return payload

    def message_payload(self, message: Message) -> dict[str, Any]:
        author = self.users.get(message.author_id) or User(id=message.author_id, name="unknown")
        pings = message.pings[-1] if message.pings else Pings()
        payload: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": message.type,
            "content": message.content,
            "author": self.user_payload(author),
            "embeds": message.embeds,
            "components": message.components,
            "attachments": [self.attachment_payload(a) for a in message.attachments],
            "mentions": [self.user_payload(u) for u in sorted(pings.users)],
            "mention_roles": [str(r) for r in sorted(pings.roles)],
            "mention_everyone": pings.everyone,
            "pinned": False,
            "tts": False,
            "flags": message.flags,
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at),
        }
        if message.guild_id is not None:
            payload["guild_id"] = str(message.guild_id)
        if message.webhook_id is not None:
            payload["webhook_id"] = str(message.webhook_id)
            payload["application_id"] = str(self.application_id)
        if message.nonce is not None:
            payload["nonce"] = message.nonce
        if message.message_reference is not None:
            payload["message_reference"] = message.message_reference
        if message.snapshots:
            payload["message_snapshots"] = [{"message": self._snapshot_payload(m)} for m in message.snapshots]
        return payload

    def _snapshot_payload(self, message: Message) -> dict[str, Any]:
        """The part of a forwarded message a forward carries (no author, no id: Discord strips them)."""
        return {
            "type": message.type,
            "content": message.content,
            "embeds": message.embeds,
            "attachments": [self.attachment_payload(a) for a in message.attachments],
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at),
            "flags": message.flags,
            "mentions": [],
            "mention_roles": [],
            "components": message.components,
        }

    def command_payload(self, command: Command) -> dict[str, Any]:
        payload = dict(command.raw)
        payload.update(
            id=str(command.id),
            application_id=str(command.application_id),
            name=command.name,
            type=command.type,
            description=command.description,
            options=command.options,
            default_member_permissions=command.default_member_permissions,
            dm_permission=command.dm_permission if command.dm_permission is not None else True,
            contexts=command.contexts,
            integration_types=command.integration_types or [0],
            nsfw=command.nsfw,
            version=str(command.version),
        )
        if command.guild_id is not None:
            payload["guild_id"] = str(command.guild_id)
        return payload

    def application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.bot.name,
            "icon": None,
            "description": "fake application",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": self.user_payload(self.owner),
            "team": None,
            "bot": self.user_payload(self.bot),
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
            "tags": [],
            "integration_types_config": {"0": {}},
        }
