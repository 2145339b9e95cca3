"""The upstream's standing as the bot sees it: whether new jobs may start, and what the operator must fix."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.pricing import cost
from bot.upstream.errors import InsufficientCredits, VideoAPIError

log = logging.getLogger(__name__)

OUT_OF_CREDITS = "The video service is out of credits for now. The admins have been told; please try again later."
MISCONFIGURED = "The bot is misconfigured right now (its video API access was refused). The admins have been told."


@dataclass
class UpstreamHealth:
    """Pause intake on 402 and on refused credentials, until a periodic re-check says it is fixed."""

    clock: Callable[[], float] = time.time
    paused_reason: str | None = None
    last_error: VideoAPIError | None = None
    last_error_at: float | None = None
    last_balance: int | None = None
    _paused_message: str | None = field(default=None, repr=False)

    @property
    def accepting(self) -> bool:
        return self.paused_reason is None

    @property
    def refusal(self) -> str | None:
        """The sentence a member reads while intake is paused."""
        return self._paused_message

    def record(self, error: VideoAPIError) -> None:
        """Remember a failure and pause intake when every further job would fail the same way."""
        self.last_error, self.last_error_at = error, self.clock()
        if isinstance(error, InsufficientCredits):
            self._pause("out_of_credits", OUT_OF_CREDITS)
        elif error.misconfigured:
            self._pause("misconfigured", MISCONFIGURED)

    def record_balance(self, balance: int) -> None:
        """A successful credits read: resume if the reason for pausing is gone."""
        self.last_balance = balance
        if self.paused_reason == "out_of_credits" and balance < cost(4):
            return
        if self.paused_reason is not None:
            log.warning("upstream usable again; taking new jobs", extra={"balance": balance})
        self.paused_reason = self._paused_message = None

    def _pause(self, reason: str, message: str) -> None:
        if self.paused_reason != reason:
            log.error("pausing new jobs: %s", reason, extra={"error_code": self.last_error and self.last_error.code})
        self.paused_reason, self._paused_message = reason, message
