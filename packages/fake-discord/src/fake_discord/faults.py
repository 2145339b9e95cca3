"""Test-injected faults: rate limits and scripted failures for matching REST calls."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import FakeDiscord


@dataclass
class RateLimitRule:
    """The next ``count`` calls whose path starts with ``prefix`` get a 429 asking to wait ``retry_after``."""

    prefix: str
    count: int
    retry_after: float
    method: str | None = None
    is_global: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and path.startswith(self.prefix) and (self.method in (None, method))


@dataclass
class FailRule:
    """The next ``times`` calls matching method and path regex fail with ``status`` and Discord ``code``."""

    method: str | None
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (None, method) and bool(self.pattern.search(path))


@dataclass
class HoldRule:
    """The next ``times`` message creates (channel posts or interaction followups) matching ``pattern`` (and
    carrying files, if ``with_files``) are
    stored as usual, but their answer is withheld until :meth:`release` or ``timeout`` seconds pass.

    This is "Discord made the message, the answer never reached the bot": kill the bot while ``held`` is
    non-empty and the message exists without the bot knowing.
    """

    pattern: re.Pattern[str]
    with_files: bool | None = None
    times: int = 1
    timeout: float = 60.0
    held: list[int] = field(default_factory=list)  # ids of the messages whose answer is withheld
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, path: str, has_files: bool) -> bool:
        return (self.times > 0 and bool(self.pattern.search(path))
                and (self.with_files is None or self.with_files == has_files))

    async def wait(self) -> None:
        """Called by the route after storing the message: the answer waits, bounded by ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), self.timeout)

    def release(self) -> None:
        self.times = 0
        self._released.set()


def hold_creates(fake: FakeDiscord, path_regex: str, *, with_files: bool | None = None, times: int = 1,
                 timeout: float = 60.0) -> HoldRule:
    """Withhold the answer to the next matching message create(s) after the message is stored."""
    rule = HoldRule(re.compile(path_regex), with_files=with_files, times=times, timeout=timeout)
    fake.world.held_creates.append(rule)
    return rule


def normalise_prefix(prefix: str) -> str:
    """Accept "/channels/1/messages" as well as "/api/v10/channels/1/messages"."""
    if prefix.startswith("/api/v10"):
        prefix = prefix[len("/api/v10") :]
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix
