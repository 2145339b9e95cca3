"""Plain records of the fake's world: guilds, channels, users, messages, commands, interactions, requests.

They are deliberately simple dataclasses so tests can read them directly; turning them into the JSON
Discord would send lives in :mod:`payloads`.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from .rules import Pings

if TYPE_CHECKING:
    from .server import FakeDiscord


class ChannelType(IntEnum):
    """The channel types the fake models (Discord's numbering)."""

    text = 0
    dm = 1
    voice = 2
    category = 4
    news = 5
    public_thread = 11


@dataclass
class User:
    id: int
    name: str
    bot: bool = False
    dms_blocked: bool = False  # DMs to this user fail with 403 / 50007, like a user who closed DMs.


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0


@dataclass
class Channel:
    id: int
    name: str
    type: int = ChannelType.text
    guild_id: int | None = None
    position: int = 0
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipient_id: int | None = None  # DM channels
    deleted: bool = False
    last_message_id: int | None = None


@dataclass
class Member:
    guild_id: int
    user_id: int
    roles: list[int] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)
    nick: str | None = None


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    filesize_limit: int = 10 * 1024 * 1024
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    locale: str = "en-US"


@dataclass
class StoredFile:
    """Bytes the fake serves from ``/attachments/{id}/{filename}``."""

    id: int
    filename: str
    data: bytes
    content_type: str
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Message:
    """A message as the fake stores it; ``history`` holds every earlier state (one entry per edit)."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    attachments: list[StoredFile] = field(default_factory=list)
    nonce: str | int | None = None
    message_reference: dict[str, Any] | None = None
    created_at: float = 0.0
    edited_at: float | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    type: int = 0
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    edits_when_old: int = 0
    raw: dict[str, Any] = field(default_factory=dict)  # the last JSON body that created/edited it
    #: A forward carries copies of the forwarded messages (``message_snapshots``), frozen at forward time.
    snapshots: list[Message] = field(default_factory=list)
    #: Who each version would notify, computed as Discord does from content + ``allowed_mentions``: one entry
    #: for the creation, then one per edit (see :func:`fake_discord.rules.compute_pings`).
    pings: list[Pings] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & 64)

    @property
    def loading(self) -> bool:
        """True while a deferred response still shows "thinking…"."""
        return bool(self.flags & 128)

    @property
    def edit_count(self) -> int:
        return len(self.history)

    def snapshot(self) -> dict[str, Any]:
        """The current visible state, kept in ``history`` before an edit."""
        return {
            "content": self.content,
            "embeds": copy.deepcopy(self.embeds),
            "components": copy.deepcopy(self.components),
            "flags": self.flags,
            "allowed_mentions": copy.deepcopy(self.allowed_mentions),
            "attachments": [a.filename for a in self.attachments],
            "edited_at": self.edited_at,
        }


@dataclass
class Command:
    """A registered application command, exactly as the bot declared it plus Discord's fields."""

    id: int
    application_id: int
    guild_id: int | None
    name: str
    type: int = 1
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    default_member_permissions: str | None = None
    dm_permission: bool | None = None
    contexts: list[int] | None = None
    integration_types: list[int] | None = None
    nsfw: bool = False
    version: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Part:
    """One multipart/form-data part of a request."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RequestRecord:
    """One REST call the bot made (Authorization header removed)."""

    method: str
    route: str  # template, e.g. /channels/{channel_id}/messages; the raw path for unknown routes
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    parts: list[Part] = field(default_factory=list)
    time: float = 0.0
    status: int | None = None
    response: Any = None
    error_code: int | None = None

    @property
    def files(self) -> list[Part]:
        return [p for p in self.parts if p.filename is not None]


@dataclass
class CallbackRecord:
    """The initial interaction response (``POST /interactions/{id}/{token}/callback``)."""

    type: int
    data: dict[str, Any] | None
    at: float
    files: list[StoredFile] = field(default_factory=list)


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched, and everything the bot did with its token."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    guild_id: int | None
    channel_id: int | None
    user_id: int
    created_at: float  # fake clock: token lifetime is measured from here
    dispatched_at: float  # monotonic: the 3-second deadline is measured from here
    fake: FakeDiscord = field(repr=False)
    response: CallbackRecord | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    message_id: int | None = None  # the component message for buttons / modals from a component
    rejected_callbacks: list[int] = field(default_factory=list)  # error codes the fake answered

    @property
    def original_message(self) -> Message | None:
        """The response message in its current state (after edits), if the response made one."""
        if self.original_message_id is None:
            return None
        return self.fake.message(self.original_message_id)

    @property
    def followups(self) -> list[Message]:
        return [m for m in (self.fake.message(i) for i in self.followup_ids) if m is not None]

    @property
    def response_latency(self) -> float | None:
        """Seconds from dispatch to the initial callback."""
        if self.response is None:
            return None
        return self.response.at - self.dispatched_at

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened in response (callback type 9)."""
        if self.response is not None and self.response.type == 9:
            return self.response.data
        return None

    async def wait_response(self, timeout: float = 5.0) -> CallbackRecord:
        """Wait until the bot sent the initial callback (accepted by the fake)."""
        await self.fake.wait_for(lambda: self.response is not None, timeout=timeout)
        assert self.response is not None
        return self.response

    async def wait_followup(self, n: int = 1, timeout: float = 5.0) -> Message:
        """Wait for the n-th followup (1-based) and return it."""
        await self.fake.wait_for(lambda: len(self.followup_ids) >= n, timeout=timeout)
        return self.followups[n - 1]

    async def wait_original(self, predicate: Any = None, timeout: float = 5.0) -> Message:
        """Wait until the original response message exists (and matches ``predicate(message)``)."""

        def ready() -> Message | None:
            msg = self.original_message
            if msg is not None and (predicate is None or predicate(msg)):
                return msg
            return None

        return await self.fake.wait_for(ready, timeout=timeout)


@dataclass
class GatewayEvent:
    """A frame the fake sent (or received) on a gateway session, kept for assertions."""

    session_id: str | None
    direction: str  # "send" | "recv"
    op: int | None
    t: str | None
    s: int | None
    d: Any
    time: float = field(default_factory=time.monotonic)


class ChangeSignal:
    """Wakes every waiter whenever the fake records something, so waits never poll with sleeps."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def bump(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_next(self, timeout: float) -> None:
        await asyncio.wait_for(self._event.wait(), timeout)
