"""The fake Gateway: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME with replay.

Frames are always uncompressed TEXT, whatever ``compress=`` the client asks for (discord.py accepts
text frames as-is). Each session buffers its dispatches with sequence numbers so a client that was
dropped (``fake.drop_gateway()``) can RESUME and get what it missed. Interactions go to the newest
session only (Discord delivers each once); other events to every live session.

Sharding, as Discord does it: IDENTIFY's ``shard: [id, count]`` names the session's shard, and a guild lives
on shard ``(guild_id >> 22) % count`` (see :func:`shard_of`). A guild's events (GUILD_CREATE, channel, role and
message events, INTERACTION_CREATE) go only to sessions of its shard; DMs to shard 0; READY lists only the
shard's guilds. A second IDENTIFY for a shard that is still connected is closed with 4005; once the first
connection is gone, a new IDENTIFY for that shard takes over from the old session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .models import ChannelType, GatewayEvent, Message

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger("fake_discord.gateway")

GUILDS = 1 << 0
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
ALREADY_AUTHENTICATED = 4005  # Discord's close code for an IDENTIFY that clashes with a live session
INVALID_SHARD = 4010
TAKEOVER_GRACE = 1.0  # seconds a clashing IDENTIFY waits for the old connection's close to land before 4005
#: Events whose payload is a guild (its id is the guild's id); every other guild event carries ``guild_id``.
GUILD_PAYLOAD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard a guild's events arrive on: ``(guild_id >> 22) % shard_count``; DMs (no guild) on shard 0."""
    return 0 if guild_id is None else (int(guild_id) >> 22) % max(1, shard_count)


def _event_guild(event: str, data: Any) -> int | None:
    """Which guild an event belongs to, read from its payload (None: not a guild's event)."""
    if not isinstance(data, dict):
        return None
    raw = data.get("id") if event in GUILD_PAYLOAD_EVENTS else data.get("guild_id")
    return int(raw) if raw is not None else None


@dataclass
class Session:
    """One gateway session (survives disconnects until the client closes it cleanly or identifies anew)."""

    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    buffer: list[tuple[int, str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    queue: asyncio.Queue[str | None] | None = None
    ended: bool = False
    resumes: int = 0

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    @property
    def shard_id(self) -> int:
        return int(self.shard[0])

    @property
    def shard_count(self) -> int:
        return int(self.shard[1])

    def serves(self, guild_id: int | None) -> bool:
        """Whether this session's shard carries the guild's events (a DM's: shard 0)."""
        return shard_of(guild_id, self.shard_count) == self.shard_id


class Gateway:
    """Owns the gateway sessions and turns world changes into dispatch events."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, Session] = {}
        self.newest: Session | None = None
        self.heartbeat_interval_ms = 41250
        self.connections: set[web.WebSocketResponse] = set()
        self._dropped: set[web.WebSocketResponse] = set()  # closed by the fake: the session stays resumable
        self.log: list[GatewayEvent] = []
        self.refusing = False  # while True, new connections are refused (Discord's gateway is down)
        #: What GET /gateway/bot answers: the recommended shard count and IDENTIFYs allowed at once.
        self.recommended_shards = 1
        self.max_concurrency = 16  # high, so tests' processes need not wait 5 s between shards
        self.refused_identifies: list[list[int]] = []  # shards whose IDENTIFY was closed with 4005

    def shard_sessions(self) -> dict[tuple[int, int], Session]:
        """The newest live session per shard ``(id, count)``: who receives that shard's guilds now."""
        out: dict[tuple[int, int], Session] = {}
        for session in self._live():
            out[(session.shard_id, session.shard_count)] = session
        return out

    # ------------------------------------------------------------------ dispatch side
    def _live(self) -> list[Session]:
        return [s for s in self.sessions.values() if not s.ended]

    def _push(self, session: Session, event: str, data: Any) -> None:
        session.seq += 1
        session.buffer.append((session.seq, event, data))
        del session.buffer[:-1000]
        if session.connected and session.queue is not None:
            session.queue.put_nowait(self._frame(session, 0, data, event, session.seq))

    def dispatch(self, event: str, data: Any, intent: int = 0) -> None:
        """Send ``event`` to every live session whose intents include ``intent`` and whose shard has the
        event's guild (read from the payload; an event of no guild goes to every session)."""
        guild_id = _event_guild(event, data)
        for session in self._live():
            if (intent == 0 or session.intents & intent) and (guild_id is None or session.serves(guild_id)):
                self._push(session, event, data)

    def dispatch_interaction(self, data: dict[str, Any]) -> bool:
        """Deliver to the newest session of the guild's shard (shard 0 for a DM), buffered for RESUME if it is
        disconnected; False if there is none."""
        guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        serving = [s for s in self._live() if s.serves(guild_id)]
        if not serving:
            log.warning("fake discord: no gateway session for the interaction's shard")
            return False
        self._push(serving[-1], "INTERACTION_CREATE", data)
        return True

    def dispatch_to_channel(self, event: str, data: Any, channel_id: int) -> None:
        channel = self.fake.world.channels.get(channel_id)
        dm = channel is not None and channel.type == ChannelType.dm
        self.dispatch(event, data, DIRECT_MESSAGES if dm else GUILD_MESSAGES)

    def dispatch_message(self, event: str, message: Message) -> None:
        """MESSAGE_CREATE/UPDATE; content is withheld without the message-content intent, like Discord."""
        world = self.fake.world
        channel = world.channels.get(message.channel_id)
        dm = channel is not None and channel.type == ChannelType.dm
        for session in self._live():
            if not session.intents & (DIRECT_MESSAGES if dm else GUILD_MESSAGES):
                continue
            if not session.serves(None if dm else message.guild_id):
                continue
            payload = world.message_payload(message)
            if message.guild_id is not None:
                member = world.guilds[message.guild_id].members.get(message.author_id)
                if member is not None:
                    member_payload = world.member_payload(member)
                    member_payload.pop("user", None)
                    payload["member"] = member_payload
            privileged = dm or message.author_id == world.bot.id
            if not privileged and not session.intents & MESSAGE_CONTENT:
                payload.update(content="", embeds=[], attachments=[], components=[])
            self._push(session, event, payload)

    # ------------------------------------------------------------------ websocket side
    def _frame(self, session: Session | None, op: int, d: Any, t: str | None = None, s: int | None = None) -> str:
        self.log.append(GatewayEvent(session.id if session else None, "send", op, t, s, d))
        return json.dumps({"op": op, "d": d, "s": s, "t": t})

    async def close_all(self, code: int = 4000) -> None:
        """Drop every connection (the client sees an abnormal close and tries to RESUME)."""
        for ws in list(self.connections):
            self._dropped.add(ws)
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=b"fake discord: dropped")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refusing:
            return web.Response(status=503, text="fake discord: gateway unavailable")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections.add(ws)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        writer = asyncio.create_task(self._writer(ws, queue))
        session: Session | None = None
        queue.put_nowait(self._frame(None, 10, {"heartbeat_interval": self.heartbeat_interval_ms}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        log.warning("fake discord: binary gateway frame ignored")
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame.get("op")
                    data = frame.get("d")
                except (ValueError, AttributeError):
                    log.warning("fake discord: unreadable gateway frame %r", msg.data[:200])
                    continue
                self.log.append(GatewayEvent(session.id if session else None, "recv", op, None, None, data))
                result = await self._handle_op(ws, queue, session, op, data)
                self.fake.notify()
                if result is False:
                    break
                session = result
        finally:
            self.connections.discard(ws)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer
            if session is not None and session.ws is ws:
                session.ws = None
                session.queue = None
                # A clean close by the client (1000/1001) ends the session, like Discord.
                if ws.close_code in (1000, 1001) and ws not in self._dropped and not self.fake.closing:
                    session.ended = True
            self._dropped.discard(ws)
            self.fake.notify()
        return ws

    async def _handle_op(
        self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None], session: Session | None, op: Any, data: Any
    ) -> Any:
        """Handle one client frame; returns the connection's session (False: close the connection)."""
        if op == 1:
            queue.put_nowait(self._frame(session, 11, None))
        elif op == 2:
            new = await self._identify(ws, queue, data or {})
            return False if new is None else new
        elif op == 6:
            resumed = await self._resume(ws, queue, data or {})
            return session if resumed is None else resumed
        elif op == 8:
            self._request_members(queue, session, data or {})
        elif op in (3, 4):
            pass  # presence / voice state updates: accepted and ignored
        else:
            log.warning("fake discord: unknown gateway op %r", op)
        return session

    async def _writer(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None]) -> None:
        while True:
            item = await queue.get()
            if item is None or ws.closed:
                return
            try:
                await ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return
            self.fake.notify()

    async def _identify(
        self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None], data: dict[str, Any]
    ) -> Session | None:
        if data.get("token") not in (self.fake.token, f"Bot {self.fake.token}"):
            log.warning("fake discord: IDENTIFY with a wrong token")
            queue.put_nowait(None)
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        world = self.fake.world
        shard = _shard(data.get("shard"))
        if shard is None:
            log.warning("fake discord: IDENTIFY with an invalid shard %r", data.get("shard"))
            queue.put_nowait(None)
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return None
        if not await self._shard_free(shard):
            log.warning("fake discord: IDENTIFY for shard %s, which another connection holds", shard)
            self.refused_identifies.append(shard)
            queue.put_nowait(None)
            await ws.close(code=ALREADY_AUTHENTICATED, message=b"Already authenticated.")
            return None
        for old in self._live():  # the shard's earlier session (its process died or gave up): taken over
            if old.shard == shard:
                old.ended = True
        session = Session(id=secrets.token_hex(16), intents=int(data.get("intents", 0) or 0), shard=shard)
        self.sessions[session.id] = session
        self.newest = session
        session.ws, session.queue = ws, queue
        mine = [g for g in world.guilds.values() if session.serves(g.id)]
        ready = {
            "v": 10,
            "user": {**world.user_payload(world.bot), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in mine],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.fake.gateway_url,
            "shard": session.shard,
            "application": {"id": str(world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "auth": {},
            "_trace": ["fake-discord"],
        }
        self._push(session, "READY", ready)
        if session.intents & GUILDS or not session.intents:
            for guild in mine:
                self._push(session, "GUILD_CREATE", world.guild_payload(guild))
        self.fake.identify_count += 1
        return session

    async def _shard_free(self, shard: list[int]) -> bool:
        """Whether no other connection holds this shard; a clash waits briefly for a closing connection (a
        client re-identifying closes its old socket first, and that close may still be on its way)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKEOVER_GRACE
        while any(s.shard == shard and s.connected for s in self._live()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _resume(
        self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None], data: dict[str, Any]
    ) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.ended or data.get("token") not in (self.fake.token, f"Bot {self.fake.token}"):
            queue.put_nowait(self._frame(None, 9, False))
            return None
        if session.connected and session.ws is not ws:
            old = session.ws
            assert old is not None
            session.ws = None
            with contextlib.suppress(Exception):
                await old.close(code=4000)
        last = int(data.get("seq") or 0)
        session.ws, session.queue = ws, queue
        session.resumes += 1
        for seq, event, payload in session.buffer:
            if seq > last:
                queue.put_nowait(self._frame(session, 0, payload, event, seq))
        session.seq += 1
        session.buffer.append((session.seq, "RESUMED", {}))
        queue.put_nowait(self._frame(session, 0, {}, "RESUMED", session.seq))
        self.newest = session
        return session

    def _request_members(self, queue: asyncio.Queue[str | None], session: Session | None, data: dict[str, Any]) -> None:
        if session is None:
            return
        world = self.fake.world
        guild_id = data.get("guild_id")
        ids = guild_id if isinstance(guild_id, list) else [guild_id]
        for gid in ids:
            guild = world.guilds.get(int(gid)) if gid is not None else None
            if guild is None:
                continue
            chunk = {
                "guild_id": str(guild.id),
                "members": [world.member_payload(m) for m in guild.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            self._push(session, "GUILD_MEMBERS_CHUNK", chunk)


def _shard(raw: Any) -> list[int] | None:
    """IDENTIFY's ``shard`` as ``[id, count]`` (absent: ``[0, 1]``); None when it is not a valid pair."""
    if raw is None:
        return [0, 1]
    try:
        shard_id, count = (int(v) for v in raw)
    except (TypeError, ValueError):
        return None
    return [shard_id, count] if count >= 1 and 0 <= shard_id < count else None
