"""The upstream's standing as the bot sees it: whether new jobs may start, and what the operator must fix.

`UpstreamHealth` is the state (paused or not, the last error); `HealthMonitor` owns the loop that re-reads
the operator's balance while intake is paused, and the one-off check `/sora-admin status` asks for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.pricing import cost
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import InsufficientCredits, VideoAPIError

log = logging.getLogger(__name__)


@dataclass
class UpstreamHealth:
    """Pause intake on 402 and on refused credentials, until a re-check says it is fixed."""

    clock: Callable[[], float] = time.time
    paused_reason: str | None = None
    last_error: VideoAPIError | None = None
    last_error_at: float | None = None
    _paused_message: str | None = field(default=None, repr=False)

    @property
    def accepting(self) -> bool:
        return self.paused_reason is None

    @property
    def refusal(self) -> str | None:
        """The sentence a member reads while intake is paused (the error's own `user_message`)."""
        return self._paused_message

    def record(self, error: VideoAPIError) -> None:
        """Remember a failure and pause intake when every further job would fail the same way."""
        self.last_error, self.last_error_at = error, self.clock()
        if isinstance(error, InsufficientCredits):
            self._pause("out_of_credits", error.user_message)
        elif error.misconfigured:
            self._pause("misconfigured", error.user_message)

    def record_balance(self, balance: int) -> None:
        """A successful credits read: resume if the reason for pausing is gone."""
        if self.paused_reason == "out_of_credits" and balance < cost(4):
            return
        if self.paused_reason is not None:
            log.warning("upstream usable again; taking new jobs", extra={"balance": balance})
        self.paused_reason = self._paused_message = None

    def _pause(self, reason: str, message: str) -> None:
        if self.paused_reason != reason:
            log.error("pausing new jobs: %s", reason, extra={"error_code": self.last_error and self.last_error.code})
        self.paused_reason, self._paused_message = reason, message


class HealthMonitor:
    """Re-read the operator's balance every `interval` while intake is paused, so jobs resume by themselves."""

    def __init__(self, api: VideoAPIClient, *, interval: float, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.api, self.interval, self.sleep = api, interval, sleep
        self.state = UpstreamHealth(clock=clock)

    async def run(self) -> None:
        """The loop (cancelled with the runner): sleep, then re-check only while paused."""
        while True:
            await self.sleep(self.interval)
            if self.state.accepting:
                continue
            try:
                await self.check_now()
            except VideoAPIError:
                pass  # recorded by check_now; the next round tries again
            except Exception:
                log.exception("health check failed")

    async def check_now(self) -> int:
        """Read the operator's balance once (also for /sora-admin status); updates the state either way.

        Raises:
            VideoAPIError: the read failed (recorded first, so intake pauses if it must).
        """
        try:
            credits = await self.api.get_credits()
        except VideoAPIError as exc:
            self.state.record(exc)
            raise
        self.state.record_balance(credits.balance)
        return credits.balance
