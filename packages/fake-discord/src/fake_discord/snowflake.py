"""Snowflake ids and the fake's clock.

Ids are made from the fake's clock exactly like Discord's (ms since the Discord epoch << 22), because
discord.py derives ``created_at`` and ``Interaction.is_expired()`` from them. The clock can be moved
forward so tests can age tokens and messages without sleeping.
"""

from __future__ import annotations

import itertools
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class Clock:
    """Wall clock with an adjustable offset, shared by every part of the fake."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Unix time in seconds as the fake sees it."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's notion of time forward (token expiry, message age) without sleeping."""
        self.offset += seconds


class SnowflakeFactory:
    """Generates unique, time-ordered snowflakes from a :class:`Clock`."""

    def __init__(self, clock: Clock, worker: int = 1) -> None:
        self._clock = clock
        self._worker = worker & 0x1F
        self._counter = itertools.count()

    def next(self, at: float | None = None) -> int:
        """A new snowflake for unix time ``at`` (default: the clock's now)."""
        when = self._clock.now() if at is None else at
        ms = int(when * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (self._worker << 17) | (next(self._counter) & 0xFFF)


def snowflake_time(snowflake: int) -> float:
    """Unix time in seconds encoded in a snowflake."""
    return ((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000.0
