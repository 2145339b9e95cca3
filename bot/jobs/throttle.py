"""When a status message is worth editing: on real change, and rarely (Discord caps edits, more so after an hour)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.notifier import StatusUpdate
from storage.models import JobState

HOUR = 3600.0


@dataclass
class StatusThrottle:
    """Decide, per job, whether an update should reach the chat.

    State and note changes always go out; progress and queue place at most every `min_interval`;
    with nothing new, the elapsed time is refreshed every `heartbeat`. Messages older than an
    hour are edited at most every `old_message_interval` (Discord's 30046 cap), final ones always.
    """

    min_interval: float = 10.0
    heartbeat: float = 60.0
    old_message_interval: float = 300.0
    _last: StatusUpdate | None = None
    _last_at: float = float("-inf")

    @classmethod
    def taken_over(cls, state: JobState, now: float) -> StatusThrottle:
        """The throttle of a job whose status another process (or an earlier run) was editing: as if an edit of
        this state had just been sent, since when the last one went is not known here. So a takeover never
        edits sooner than one process would: only a real change, a final edit, or the throttle's own pace."""
        throttle = cls()
        throttle._last, throttle._last_at = StatusUpdate(state=state, elapsed=0.0), now
        return throttle

    def should_send(self, update: StatusUpdate, now: float, message_age: float | None) -> bool:
        last = self._last
        since = now - self._last_at
        if update.final or last is None:
            decision = True
        elif message_age is not None and message_age >= HOUR and since < self.old_message_interval:
            decision = False
        elif (update.state, update.note) != (last.state, last.note):
            decision = True
        elif (update.progress, update.queue_position) != (last.progress, last.queue_position):
            decision = since >= self.min_interval
        else:
            decision = since >= self.heartbeat
        if decision:
            self._last, self._last_at = update, now
        return decision
