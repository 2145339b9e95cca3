"""``FakeDiscord``: a local Discord (REST v10 + Gateway) on 127.0.0.1 for the real discord.py client.

Start it with ``async with FakeDiscord() as fake:``, build a world (guilds, channels, users), point
discord.py at it (``patch_discord_py(fake)`` in-process, or ``fake.env()`` for a subprocess), then
drive the bot as a user would and assert on what the fake recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import yarl
from aiohttp import web

from . import permissions as perm
from . import routes_channels, routes_commands, routes_interactions
from .control import FileSpec, Interactions
from .faults import FailRule, RateLimitRule, normalise_prefix
from .gateway import GUILDS, Gateway
from .models import (
    ChangeSignal,
    Channel,
    ChannelType,
    Command,
    Guild,
    InteractionRecord,
    Member,
    Message,
    Overwrite,
    RequestRecord,
    Role,
    User,
)
from .rest import make_middleware
from .snowflake import Clock, SnowflakeFactory
from .state import DiscordWorld

log = logging.getLogger("fake_discord")
T = TypeVar("T")

DEFAULT_TOKEN = "FAKE0bot0token.Gxxxxx.local-discord-00000000000000000000000000"


class FakeDiscord:
    """The local Discord. Attributes tests may tune:

    - ``initial_response_deadline`` (3.0 s): callbacks later than this get 404 / 10062.
    - ``interaction_token_lifetime`` (900 s, fake clock): webhook calls after it get 401 / 50027.
    - ``old_message_edit_limit`` (5, ``None`` = unlimited): edits allowed on a message older than an
      hour before 400 / 30046.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, bot_name: str = "Test Bot", host: str = "127.0.0.1") -> None:
        self.token = token
        self.host = host
        self.clock = Clock()
        self.ids = SnowflakeFactory(self.clock)
        self.world = DiscordWorld(self.clock, self.ids, bot_name)
        self.requests: list[RequestRecord] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.attachment_downloads: list[int] = []
        #: File ids asked for with an expired (or unsigned, or altered) link: answered 404 like Discord's CDN.
        self.expired_attachment_reads: list[int] = []
        self.initial_response_deadline = 3.0
        self.interaction_token_lifetime = 15 * 60.0
        self.old_message_edit_limit: int | None = 5
        self.rate_limits: list[RateLimitRule] = []
        self.fail_rules: list[FailRule] = []
        self.require_gateway = True  # False: interactions may be created with no bot connected (raw HTTP tests)
        self.identify_count = 0
        self.sync_count = 0
        self.closing = False
        self.port = 0
        self.gateway = Gateway(self)
        self._changed = ChangeSignal()
        self._control = Interactions(self)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=1024**3, middlewares=[make_middleware(self)])
        routes_commands.register(app, self)
        routes_interactions.register(app, self)
        routes_channels.register(app, self)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.base_url = self.base_url
        log.info("fake discord listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        self.closing = True
        await self.gateway.close_all(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rest_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    def env(self) -> dict[str, str]:
        """Environment for a bot subprocess: where Discord is and the token to present."""
        return {
            "DISCORD_API_BASE": self.rest_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": self.token,
        }

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> User:
        return self.world.bot

    # ------------------------------------------------------------------ world building
    def add_user(self, name: str, bot: bool = False, dms_blocked: bool = False) -> User:
        return self.world.add_user(name, bot=bot, dms_blocked=dms_blocked)

    def add_guild(
        self,
        name: str = "Test Server",
        owner_id: int | None = None,
        filesize_limit: int = 10 * 1024 * 1024,
        *,
        everyone_permissions: Any = perm.DEFAULT_EVERYONE,
        bot_permissions: Any = perm.DEFAULT_BOT,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with @everyone (id == guild id), the bot's managed role and the bot as member.

        Added after the bot connected, it is announced with GUILD_CREATE (like the bot joining), on its shard's
        sessions only. ``shard=(id, count)`` picks an id that lives on that shard (``shard_of(id, count)``).
        """
        guild = self.world.add_guild(
            name, owner_id, filesize_limit, perm.to_bits(everyone_permissions), perm.to_bits(bot_permissions),
            shard,
        )
        self._announce_guild(guild)
        return guild

    def add_channel(self, guild_id: int, name: str, type: int = ChannelType.text) -> Channel:
        channel = self.world.add_channel(guild_id, name, type)
        self.gateway.dispatch("CHANNEL_CREATE", self.world.channel_payload(channel), GUILDS)
        return channel

    def add_member(self, guild_id: int, user_id: int, permissions: Any = 0, roles: Any = ()) -> Member:
        """Make a user a member; ``permissions`` (int, ``discord.Permissions`` or names) become a role."""
        member = self.world.add_member(guild_id, int(user_id), perm.to_bits(permissions), [int(r) for r in roles])
        if self.gateway.sessions:
            for role_id in member.roles:
                role = self.world.guilds[guild_id].roles[role_id]
                self.gateway.dispatch(
                    "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": self.world.role_payload(role)}, GUILDS
                )
        return member

    def add_role(self, guild_id: int, name: str, permissions: Any = 0) -> Role:
        role = self.world.add_role(guild_id, name, perm.to_bits(permissions))
        self.gateway.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": self.world.role_payload(role)}, GUILDS
        )
        return role

    def delete_role(self, guild_id: int, role_id: int) -> None:
        """The role disappears: taken from every member, announced with GUILD_ROLE_DELETE (as Discord does)."""
        guild = self.world.guilds[guild_id]
        guild.roles.pop(int(role_id))
        for member in guild.members.values():
            if int(role_id) in member.roles:
                member.roles.remove(int(role_id))
        self.gateway.dispatch("GUILD_ROLE_DELETE", {"guild_id": str(guild_id), "role_id": str(role_id)}, GUILDS)
        self.notify()

    def _announce_guild(self, guild: Guild) -> None:
        if self.gateway.sessions:
            self.gateway.dispatch("GUILD_CREATE", self.world.guild_payload(guild), GUILDS)

    def _channel_changed(self, channel: Channel) -> None:
        self.gateway.dispatch("CHANNEL_UPDATE", self.world.channel_payload(channel), GUILDS)
        self.notify()

    def forbid(self, channel_id: int, permissions: Any, user_id: int | None = None) -> None:
        """Deny permissions (names like {"send_messages", "attach_files", "view_channel"}) to the bot
        (or ``user_id``) in a channel, as a member overwrite announced with CHANNEL_UPDATE."""
        channel = self.world.channels[channel_id]
        target = self.world.bot.id if user_id is None else int(user_id)
        ow = channel.overwrites.setdefault(target, Overwrite(id=target, type=1))
        bits = perm.to_bits(permissions)
        ow.deny |= bits
        ow.allow &= ~bits
        self._channel_changed(channel)

    def allow(self, channel_id: int, permissions: Any, user_id: int | None = None) -> None:
        """Undo :meth:`forbid` (or grant explicitly) for the bot or ``user_id`` in a channel."""
        channel = self.world.channels[channel_id]
        target = self.world.bot.id if user_id is None else int(user_id)
        ow = channel.overwrites.setdefault(target, Overwrite(id=target, type=1))
        bits = perm.to_bits(permissions)
        ow.deny &= ~bits
        self._channel_changed(channel)

    def delete_channel(self, channel_id: int) -> None:
        """The channel disappears: REST calls on it get 404 / 10003 Unknown Channel."""
        channel = self.world.channels[channel_id]
        channel.deleted = True
        self.gateway.dispatch("CHANNEL_DELETE", self.world.channel_payload(channel), GUILDS)
        self.notify()

    def block_dms(self, user_id: int, blocked: bool = True) -> None:
        """DMs to this user fail with 403 / 50007."""
        self.world.users[int(user_id)].dms_blocked = blocked

    def set_filesize_limit(self, guild_id: int, limit: int) -> None:
        self.world.guilds[guild_id].filesize_limit = limit

    # ------------------------------------------------------------------ faults
    def rate_limit(
        self,
        route_prefix: str,
        count: int = 1,
        retry_after: float = 0.1,
        *,
        method: str | None = None,
        is_global: bool = False,
    ) -> RateLimitRule:
        """The next ``count`` calls under ``route_prefix`` (e.g. "/channels/123/messages") get 429."""
        rule = RateLimitRule(normalise_prefix(route_prefix), count, retry_after, method, is_global)
        self.rate_limits.append(rule)
        return rule

    def fail_next(
        self,
        method: str | None,
        path_regex: str,
        status: int = 500,
        code: int = 0,
        times: int = 1,
        message: str | None = None,
    ) -> FailRule:
        """The next ``times`` calls matching ``method`` (None = any) and ``path_regex`` fail."""
        rule = FailRule(
            method, re.compile(path_regex), status, code, message or f"{status}: injected by the fake", times
        )
        self.fail_rules.append(rule)
        return rule

    async def drop_gateway(self, code: int = 4000, *, stay_down: bool = False) -> None:
        """Close the gateway connection(s) abnormally; discord.py reconnects and RESUMEs.

        With `stay_down`, reconnections are refused (503) until `restore_gateway()`: an outage, not a blip.
        """
        self.gateway.refusing = stay_down
        await self.gateway.close_all(code=code)

    def restore_gateway(self) -> None:
        """End an outage begun with `drop_gateway(stay_down=True)`: the client's next attempt connects."""
        self.gateway.refusing = False

    # ------------------------------------------------------------------ user actions (see control.py)
    async def slash(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        command: str,
        options: dict[str, Any] | None = None,
        attachments: dict[str, FileSpec] | None = None,
        **kwargs: Any,
    ) -> InteractionRecord:
        return await self._control.slash(guild_id, channel_id, user_id, command, options, attachments, **kwargs)

    async def context_menu(
        self, guild_id: int | None, channel_id: int | None, user_id: int, name: str, target: Any, **kwargs: Any
    ) -> InteractionRecord:
        return await self._control.context_menu(guild_id, channel_id, user_id, name, target, **kwargs)

    async def press_button(
        self, message: Message | int, custom_id: str, user_id: int, **kwargs: Any
    ) -> InteractionRecord:
        return await self._control.press_button(message, custom_id, user_id, **kwargs)

    async def submit_modal(
        self, source: InteractionRecord, values: dict[str, Any], user_id: int | None = None, *,
        ignore_choices: bool = False,
    ) -> InteractionRecord:
        return await self._control.submit_modal(source, values, user_id, ignore_choices=ignore_choices)

    def post_user_message(self, channel_id: int, user_id: int, content: str = "", attachments: Any = (),
                          **kwargs: Any) -> Message:
        return self._control.post_user_message(channel_id, user_id, content, attachments, **kwargs)

    def media_proxy_url(self, filename: str, data: bytes, content_type: str | None = None) -> str:
        return self._control.media_proxy_url(filename, data, content_type)

    # ------------------------------------------------------------------ queries
    @property
    def messages(self) -> dict[int, list[Message]]:
        """Every message ever created, per channel, in creation order (deleted ones flagged)."""
        return self.world.messages

    def message(self, message_id: int) -> Message | None:
        return self.world.messages_by_id.get(int(message_id))

    def channel_messages(
        self, channel_id: int, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[Message]:
        return [
            m
            for m in self.world.messages.get(int(channel_id), [])
            if (include_ephemeral or not m.ephemeral) and (include_deleted or not m.deleted)
        ]

    def dm_messages(self, user_id: int) -> list[Message]:
        channel_id = self.world.dm_channels.get(int(user_id))
        return [] if channel_id is None else self.channel_messages(channel_id)

    def commands_in(self, guild_id: int | None) -> list[Command]:
        """Registered commands of one scope (``None`` = global)."""
        return [c for c in self.world.commands.values() if c.guild_id == guild_id]

    @property
    def commands(self) -> list[Command]:
        return list(self.world.commands.values())

    def requests_to(self, method: str | None = None, route: str | None = None) -> list[RequestRecord]:
        """Recorded requests by method and route template or regex on the path."""
        out = []
        for rec in self.requests:
            if method is not None and rec.method != method:
                continue
            if route is not None and rec.route != route and not re.search(route, rec.path):
                continue
            out.append(rec)
        return out

    # ------------------------------------------------------------------ waiting
    def notify(self) -> None:
        """Wake waiters: called on every recorded event."""
        self._changed.bump()

    async def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, what: str | None = None, recheck: float | None = None
    ) -> T:
        """Re-check ``predicate()`` on every recorded event until it is truthy; returns its value.

        Predicates on state outside the fake (the bot's own objects) should call ``fake.notify()`` when
        that state changes, or pass ``recheck`` (seconds) as a safety net.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(
                    f"{r.method} {r.path} -> {r.status} {r.error_code or ''}" for r in self.requests[-12:]
                )
                raise TimeoutError(
                    f"fake discord: timed out after {timeout}s waiting for {what or predicate!r}; "
                    f"recent requests:\n  {recent}"
                )
            with contextlib.suppress(TimeoutError):
                await self._changed.wait_next(remaining if recheck is None else min(remaining, recheck))

    async def sync_wait_commands(
        self, timeout: float = 10.0, guild_id: int | None = None, names: Any = ()
    ) -> list[Command]:
        """Wait until the bot registered commands (optionally in one guild / with these names)."""
        wanted = set(names)

        def done() -> list[Command] | None:
            cmds = self.commands if guild_id is None else self.commands_in(guild_id)
            have = {c.name for c in cmds}
            return cmds if cmds and wanted <= have else None

        return await self.wait_for(done, timeout, "registered commands")

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until a client identified (READY and GUILD_CREATEs are queued to it)."""
        await self.wait_for(
            lambda: self.gateway.newest is not None and self.gateway.newest.connected, timeout, "IDENTIFY"
        )


@contextlib.contextmanager
def patch_discord_py(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at ``fake`` for the duration."""
    import discord.gateway
    import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.rest_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
