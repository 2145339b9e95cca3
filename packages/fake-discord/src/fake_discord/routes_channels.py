"""Bot-token REST routes: users, guilds, channels, messages, DMs, and the attachment "CDN".

Channel writes check the bot's computed channel permissions (view → 50001, send/attach/history →
50013), deleted channels (10003), closed DMs (50007) and the upload limit (413 / 40005). A create with
``enforce_nonce`` repeated within ``world.nonce_window`` returns the first message, as Discord does.
History pages newest first: ``before`` (or nothing) gives the newest ``limit`` older messages, ``after``
the oldest ``limit`` newer ones, both in descending id order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors
from . import permissions as perm
from .messages import check_body, delete_message, edit_message, new_message, store_parts
from .models import Channel, ChannelType, Message
from .rest import RECORD

if TYPE_CHECKING:
    from .server import FakeDiscord

A = "/api/v10"


def get_channel(fake: FakeDiscord, raw_id: str) -> Channel:
    try:
        channel = fake.world.channels.get(int(raw_id))
    except ValueError:
        channel = None
    if channel is None or channel.deleted:
        raise errors.unknown_channel()
    return channel


def require(fake: FakeDiscord, channel: Channel, *names: str) -> None:
    """Bot permission check in a guild channel, with Discord's error codes."""
    if channel.guild_id is None:
        return
    perms = fake.world.permissions_in(channel, fake.world.bot.id)
    if not perm.has(perms, "view_channel"):
        raise errors.missing_access()
    for name in names:
        if not perm.has(perms, name):
            raise errors.missing_permissions()


def get_message(fake: FakeDiscord, channel: Channel, raw_id: str) -> Message:
    try:
        message = fake.world.messages_by_id.get(int(raw_id))
    except ValueError:
        message = None
    if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
        raise errors.unknown_message()
    return message


def nonce_match(fake: FakeDiscord, channel: Channel, author_id: int, body: dict[str, Any]) -> Message | None:
    """With ``enforce_nonce``, Discord answers a create whose nonce the same author used in this channel
    within the past few minutes with that earlier message, and creates nothing."""
    nonce = body.get("nonce")
    if not body.get("enforce_nonce") or nonce in (None, ""):
        return None
    if len(str(nonce)) > 25:
        raise errors.invalid_form("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    since = fake.clock.now() - fake.world.nonce_window
    for message in reversed(fake.world.messages.get(channel.id, [])):
        if message.created_at < since:
            break
        if not message.deleted and message.author_id == author_id and message.nonce is not None and str(message.nonce) == str(nonce):
            return message
    return None


def register(app: web.Application, fake: FakeDiscord) -> None:
    world = fake.world

    async def gateway(request: web.Request) -> tuple[int, Any]:
        return 200, {"url": fake.gateway_url}

    async def gateway_bot(request: web.Request) -> tuple[int, Any]:
        # The recommended shard count, and how many IDENTIFYs may start at once (discord.py and the bot pace
        # IDENTIFYs by `max_concurrency`: one per 5 s per bucket `shard_id % max_concurrency`).
        gw = fake.gateway
        limit = {"total": 1000, "remaining": max(0, 1000 - fake.identify_count), "reset_after": 86_400_000,
                 "max_concurrency": gw.max_concurrency}
        return 200, {"url": fake.gateway_url, "shards": gw.recommended_shards, "session_start_limit": limit}

    async def me(request: web.Request) -> tuple[int, Any]:
        payload = world.user_payload(world.bot)
        payload.update(verified=True, mfa_enabled=False, locale="en-US", email=None)
        return 200, payload

    async def application(request: web.Request) -> tuple[int, Any]:
        return 200, world.application_payload()

    async def get_user(request: web.Request) -> tuple[int, Any]:
        user = world.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise errors.DiscordError(404, 10013, "Unknown User")
        return 200, world.user_payload(user)

    async def create_dm(request: web.Request) -> tuple[int, Any]:
        body = request[RECORD].json or {}
        try:
            user = world.users.get(int(body.get("recipient_id")))
        except (TypeError, ValueError):
            user = None
        if user is None:
            raise errors.invalid_form("recipient_id", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        return 200, world.channel_payload(world.dm_channel(user.id))

    def _guild(request: web.Request) -> Any:
        guild = world.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise errors.DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def get_guild(request: web.Request) -> tuple[int, Any]:
        guild = _guild(request)
        payload = world.guild_payload(guild, full=False)
        payload.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return 200, payload

    async def guild_channels(request: web.Request) -> tuple[int, Any]:
        guild = _guild(request)
        return 200, [world.channel_payload(c) for c in guild.channels.values() if not c.deleted]

    async def guild_roles(request: web.Request) -> tuple[int, Any]:
        return 200, [world.role_payload(r) for r in _guild(request).roles.values()]

    async def get_member(request: web.Request) -> tuple[int, Any]:
        guild = _guild(request)
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise errors.DiscordError(404, 10007, "Unknown Member")
        return 200, world.member_payload(member)

    async def channel_get(request: web.Request) -> tuple[int, Any]:
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel)
        return 200, world.channel_payload(channel)

    async def send(request: web.Request) -> tuple[int, Any]:
        record = request[RECORD]
        channel = get_channel(fake, request.match_info["channel_id"])
        body = record.json or {}
        files = record.files
        needed = ["send_messages"]
        if files:
            needed.append("attach_files")
        if body.get("message_reference"):
            needed.append("read_message_history")
        require(fake, channel, *needed)
        if channel.type == ChannelType.dm:
            user = world.users.get(channel.recipient_id or 0)
            if user is None or user.dms_blocked or user.bot:
                raise errors.cannot_dm()
        check_body(fake, body, files, channel, create=True)
        ref = body.get("message_reference")
        if ref and ref.get("message_id"):
            target = world.messages_by_id.get(int(ref["message_id"]))
            if (target is None or target.deleted) and ref.get("fail_if_not_exists", True):
                raise errors.invalid_form("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        earlier = nonce_match(fake, channel, world.bot.id, body)
        if earlier is not None:
            return 200, world.message_payload(earlier)
        stored = store_parts(fake, files, body)
        message = new_message(fake, channel, world.bot.id, body, stored)
        for rule in world.held_creates:
            if rule.matches(record.path, bool(files)):
                rule.times -= 1
                rule.held.append(message.id)
                fake.notify()
                await rule.wait()
                break
        return 200, world.message_payload(message)

    async def history(request: web.Request) -> tuple[int, Any]:
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel, "read_message_history")
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        msgs = [m for m in world.messages.get(channel.id, []) if not m.deleted and not m.ephemeral]
        if "before" in request.query:
            msgs = [m for m in msgs if m.id < int(request.query["before"])]
        if "after" in request.query:
            msgs = [m for m in msgs if m.id > int(request.query["after"])][:limit]
        msgs = sorted(msgs, key=lambda m: m.id, reverse=True)[:limit]
        return 200, [world.message_payload(m) for m in msgs]

    async def message_get(request: web.Request) -> tuple[int, Any]:
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel, "read_message_history")
        return 200, world.message_payload(get_message(fake, channel, request.match_info["message_id"]))

    async def message_edit(request: web.Request) -> tuple[int, Any]:
        record = request[RECORD]
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel)
        message = get_message(fake, channel, request.match_info["message_id"])
        if message.author_id != world.bot.id:
            raise errors.DiscordError(403, 50005, "Cannot edit a message authored by another user")
        body = record.json or {}
        if record.files:
            require(fake, channel, "attach_files")
        check_body(fake, body, record.files, channel, create=False)
        edit_message(fake, message, body, store_parts(fake, record.files, body))
        return 200, world.message_payload(message)

    async def message_delete(request: web.Request) -> tuple[int, Any]:
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel)
        message = get_message(fake, channel, request.match_info["message_id"])
        if message.author_id != world.bot.id:
            require(fake, channel, "manage_messages")
        delete_message(fake, message)
        return 204, None

    async def typing(request: web.Request) -> tuple[int, Any]:
        channel = get_channel(fake, request.match_info["channel_id"])
        require(fake, channel, "send_messages")
        return 204, None

    async def attachment(request: web.Request) -> web.StreamResponse:
        stored = world.files.get(int(request.match_info["file_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        if not world.signed_url_valid(stored.id, request.query):  # Discord's CDN: expired or unsigned link
            fake.expired_attachment_reads.append(stored.id)
            fake.notify()
            return web.Response(status=404, text="This content is no longer available.")
        fake.attachment_downloads.append(stored.id)
        fake.notify()
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})

    r = app.router
    r.add_get(f"{A}/gateway", gateway)
    r.add_get(f"{A}/gateway/bot", gateway_bot)
    r.add_get(f"{A}/users/@me", me)
    r.add_get(f"{A}/oauth2/applications/@me", application)
    r.add_get(f"{A}/applications/@me", application)
    r.add_post(f"{A}/users/@me/channels", create_dm)
    r.add_get(f"{A}/users/{{user_id:\\d+}}", get_user)
    r.add_get(f"{A}/guilds/{{guild_id:\\d+}}", get_guild)
    r.add_get(f"{A}/guilds/{{guild_id:\\d+}}/channels", guild_channels)
    r.add_get(f"{A}/guilds/{{guild_id:\\d+}}/roles", guild_roles)
    r.add_get(f"{A}/guilds/{{guild_id:\\d+}}/members/{{user_id:\\d+}}", get_member)
    r.add_get(f"{A}/channels/{{channel_id}}", channel_get)
    r.add_post(f"{A}/channels/{{channel_id}}/messages", send)
    r.add_get(f"{A}/channels/{{channel_id}}/messages", history)
    r.add_get(f"{A}/channels/{{channel_id}}/messages/{{message_id}}", message_get)
    r.add_patch(f"{A}/channels/{{channel_id}}/messages/{{message_id}}", message_edit)
    r.add_delete(f"{A}/channels/{{channel_id}}/messages/{{message_id}}", message_delete)
    r.add_post(f"{A}/channels/{{channel_id}}/typing", typing)
    r.add_get("/attachments/{file_id:\\d+}/{filename}", attachment)
