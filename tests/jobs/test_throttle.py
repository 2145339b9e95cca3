"""Status edits happen on change and rarely; old messages are edited even more rarely (Discord's 30046)."""

from __future__ import annotations

from bot.jobs.notifier import StatusUpdate
from bot.jobs.throttle import StatusThrottle


def upd(state: str = "running", progress: float | None = None, final: bool = False) -> StatusUpdate:
    return StatusUpdate(state=state, elapsed=0, progress=progress, final=final)


def test_state_changes_always_progress_rarely() -> None:
    t = StatusThrottle(min_interval=10, heartbeat=60)
    assert t.should_send(upd("queued"), 0, 0)
    assert t.should_send(upd("running"), 1, 1)
    assert not t.should_send(upd("running", 10), 2, 2)
    assert t.should_send(upd("running", 10), 11, 11)
    assert not t.should_send(upd("running", 10), 30, 30)
    assert t.should_send(upd("running", 10), 72, 72)  # heartbeat refreshes elapsed time


def test_old_messages_edit_rarely_but_final_always() -> None:
    t = StatusThrottle(old_message_interval=300)
    assert t.should_send(upd("running"), 0, 4000)
    assert not t.should_send(upd("completed"), 100, 4100)
    assert t.should_send(upd("completed"), 301, 4301)
    assert t.should_send(upd("delivered", final=True), 302, 4302)


def test_a_takeover_edits_no_sooner_than_the_process_before_it_would_have() -> None:
    t = StatusThrottle.taken_over("running", 1000)  # the other process may have edited just now
    assert not t.should_send(upd("running", 10), 1001, 1001)  # no progress edit within min_interval
    assert t.should_send(upd("completed"), 1002, 1002)  # a real change still goes out at once
    old = StatusThrottle.taken_over("running", 5000)
    assert not old.should_send(upd("completed"), 5100, 4000)  # an hour-old message: the 30046 pace holds
    assert old.should_send(upd("delivered", final=True), 5101, 4001)
