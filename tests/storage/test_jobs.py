"""Creating jobs with their hold, the refusals in order, state moves, settlement on finish, queue order."""

from __future__ import annotations

import pytest

from storage.db import Database
from storage.errors import (
    Blocked,
    ChannelNotAllowed,
    Cooldown,
    DailyBudgetExhausted,
    IllegalTransition,
    JobNotFound,
    NotEnoughCredits,
    QuotaRefused,
    TooManyJobs,
)

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD, Clock, request, run_to_completed


async def test_create_holds_the_cost_and_stores_the_request(db: Database) -> None:
    job = await db.jobs.create_with_hold(
        request(duration=8, image_url="https://img/x.png", interaction_application_id=7,
                interaction_token="tok-SECRET", interaction_token_expires_at=123.0)
    )
    assert (job.state, job.cost, job.duration, job.image_url) == ("queued", 200, 8, "https://img/x.png")
    assert len(job.id) == 32 and len(job.callback_token) >= 40
    assert job.interaction_token == "tok-SECRET"
    assert "tok-SECRET" not in repr(job) and job.callback_token not in repr(job)
    assert await db.jobs.get(job.id) == job
    assert await db.jobs.get_by_callback_token(job.callback_token) == job
    assert await db.jobs.get_by_callback_token("guess") is None
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (0, 200)


async def test_refusals_come_in_order_and_write_nothing(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, allowed_channel_ids=[500], max_jobs_per_member=1)
    await db.guilds.block(GUILD, ALICE, "spam", actor_id=BOB)
    with pytest.raises(Blocked) as blocked:
        await db.jobs.create_with_hold(request(channel_id=999))
    assert "spam" in blocked.value.user_message
    await db.guilds.unblock(GUILD, ALICE)
    with pytest.raises(ChannelNotAllowed) as channel:
        await db.jobs.create_with_hold(request(channel_id=999))
    assert channel.value.allowed_channel_ids == (500,)  # the front end names them (tests/test_errors.py)
    await db.jobs.create_with_hold(request(channel_id=777, parent_channel_id=500))  # a thread of an allowed channel
    with pytest.raises(TooManyJobs) as many:
        await db.jobs.create_with_hold(request())
    assert many.value.limit == 1
    await db.guilds.update(GUILD, max_jobs_per_member=5)
    clock.advance(10)
    with pytest.raises(Cooldown) as cooldown:
        await db.jobs.create_with_hold(request())
    assert cooldown.value.retry_after_seconds == 20
    clock.advance(20)
    with pytest.raises(NotEnoughCredits) as poor:
        await db.jobs.create_with_hold(request(duration=12))
    assert (poor.value.available, poor.value.needed) == (100, 300)
    assert "300" in poor.value.user_message and "100" in poor.value.user_message
    assert len(await db.jobs.recent_for_user(GUILD, ALICE)) == 1
    assert (await db.ledger.balance(GUILD, ALICE)).held == 100
    assert await db.ledger.verify() == []


async def test_daily_budget_counts_net_spend_of_the_server(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, daily_budget=300, cooldown_seconds=0)
    first = await db.jobs.create_with_hold(request(ALICE, duration=8))  # 200
    with pytest.raises(DailyBudgetExhausted) as exhausted:
        await db.jobs.create_with_hold(request(BOB, duration=8))
    assert (exhausted.value.spent, exhausted.value.budget) == (200, 300)
    assert "100 of 300" in exhausted.value.user_message
    await db.jobs.create_with_hold(request(BOB, duration=4))  # exactly 300
    await db.jobs.finish_failed(first.id, "upstream_error", "failed")  # released: no longer spent
    await db.jobs.create_with_hold(request(ALICE, duration=8))
    assert (await db.jobs.create_with_hold(request(ALICE, guild_id=OTHER_GUILD, duration=8))).cost == 200
    clock.advance(86_400)  # a new UTC day
    await db.ledger.adjust(GUILD, BOB, 500, actor_id=None, reason="t")
    await db.jobs.create_with_hold(request(BOB, duration=12))


async def test_every_refusal_has_a_user_message() -> None:
    from datetime import UTC, datetime

    refusals: list[QuotaRefused] = [
        Blocked(""), Blocked("x"), ChannelNotAllowed([1, 2]), TooManyJobs(1), TooManyJobs(3), Cooldown(1),
        DailyBudgetExhausted(100, 90, 100, datetime(2025, 1, 1, tzinfo=UTC)), NotEnoughCredits(0, 100),
        NotEnoughCredits(0, 100, datetime(2025, 1, 1, tzinfo=UTC)),
    ]
    for refusal in refusals:
        assert refusal.user_message.endswith(".")
        assert str(refusal) == refusal.user_message


async def test_life_of_a_delivered_job(db: Database, clock: Clock) -> None:
    job = await db.jobs.create_with_hold(request())
    job = await db.jobs.mark_submitting(job.id)
    assert (job.state, job.attempts) == ("submitting", 1)
    job = await db.jobs.mark_submitting(job.id)  # after a restart
    assert job.attempts == 2
    job = await db.jobs.mark_running(job.id, "task-1")
    assert (job.state, job.task_id) == ("running", "task-1")
    clock.advance(60)
    job = await db.jobs.mark_completed(job.id, "https://cdn/v.mp4", 999.0)
    assert (job.result_url, job.result_expires_at, job.updated_at) == ("https://cdn/v.mp4", 999.0, clock.t)
    await db.jobs.set_status_message(job.id, 42, 4242)
    assert await db.jobs.finish_delivered(job.id, "https://discord.com/channels/1/42/1") is True
    assert await db.jobs.finish_delivered(job.id, "again") is False
    assert await db.jobs.finish_failed(job.id, "late", "late") is False
    done = await db.jobs.get(job.id)
    assert done is not None
    assert (done.state, done.delivered_message_url, done.finished_at) == (
        "delivered", "https://discord.com/channels/1/42/1", clock.t)
    assert (done.status_channel_id, done.status_message_id) == (42, 4242)
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (100, 0)
    assert await db.ledger.verify() == []


async def test_failed_job_is_released_once(db: Database) -> None:
    job = await db.jobs.create_with_hold(request(duration=8))
    await db.jobs.mark_submitting(job.id)
    assert await db.jobs.finish_failed(job.id, "invalid_request", "The prompt was empty.") is True
    assert await db.jobs.finish_failed(job.id, "invalid_request", "again") is False
    failed = await db.jobs.get(job.id)
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error_message) == ("failed", "invalid_request",
                                                                      "The prompt was empty.")
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (200, 0)


async def test_illegal_transitions_are_refused(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    with pytest.raises(IllegalTransition):
        await db.jobs.mark_running(job.id, "t")
    with pytest.raises(IllegalTransition):
        await db.jobs.finish_delivered(job.id, None)  # not completed: never charge an unfinished job
    with pytest.raises(IllegalTransition):
        await db.jobs.set_state(job.id, "delivered")
    with pytest.raises(ValueError, match="cannot set"):
        await db.jobs.set_state(job.id, "submitting", cost=1)
    with pytest.raises(JobNotFound):
        await db.jobs.mark_submitting("missing")
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    with pytest.raises(IllegalTransition):
        await db.jobs.mark_submitting(job.id)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 100


async def test_queue_positions_unfinished_and_counts(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, cooldown_seconds=0, max_jobs_per_member=10)
    await db.guilds.update(OTHER_GUILD, cooldown_seconds=0)
    a = await db.jobs.create_with_hold(request(ALICE))
    o = await db.jobs.create_with_hold(request(ALICE, guild_id=OTHER_GUILD))
    b = await db.jobs.create_with_hold(request(BOB))
    c = await db.jobs.create_with_hold(request(BOB))
    await db.jobs.mark_submitting(a.id)  # queue places are the runner's SlotPool's (tests/jobs/test_slots.py)
    assert await db.jobs.running_count() == 1
    assert await db.jobs.running_count(OTHER_GUILD) == 0
    await db.jobs.finish_failed(b.id, "x", "y")
    assert [j.id for j in await db.jobs.unfinished()] == [a.id, o.id, c.id]
    assert [j.id for j in await db.jobs.active_for_guild(GUILD)] == [a.id, c.id]
    assert [j.id for j in await db.jobs.recent_for_user(GUILD, BOB)] == [c.id, b.id]
    assert await db.jobs.recent_for_user(OTHER_GUILD, BOB) == []


async def test_interaction_token_can_be_forgotten(db: Database) -> None:
    job = await db.jobs.create_with_hold(request(interaction_token="s3cret", interaction_token_expires_at=100.0))
    assert job.interaction_usable(now=50.0)
    assert not job.interaction_usable(now=90.0)
    assert await db.jobs.forget_expired_interactions(100.0) == 1
    again = await db.jobs.get(job.id)
    assert again is not None and again.interaction_token is None
