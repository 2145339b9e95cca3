"""Cancel of a queued job (issue 15, item 2): one conditional `queued → failed` with its release, so a press
racing the submission either ends the job before its create or changes nothing; never both."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import Database
from storage.errors import JobEnded, JobNotFound

from .conftest import ALICE, BOB, GUILD, request


async def kinds(db: Database, job_id: str) -> list[str]:
    return [r["kind"] for r in await db.fetchall("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))]


async def test_cancel_releases_a_queued_job_once_and_records_who(db: Database) -> None:
    await db.ledger.adjust(GUILD, ALICE, 100, None, "test credits")
    job = await db.jobs.create_with_hold(request())
    assert await db.jobs.cancel_queued(job.id, BOB) is True
    assert await db.jobs.cancel_queued(job.id, ALICE) is False  # pressed twice: nothing more
    ended = await db.jobs.get(job.id)
    assert ended is not None and (ended.state, ended.error_code) == ("failed", "cancelled")
    assert ended.interaction_token is None
    assert await kinds(db, job.id) == ["hold", "release"]
    release = (await db.ledger.for_job(job.id))["release"]
    assert release.actor_id == BOB and "admin" in release.reason
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (300, 0)  # 200 starting + 100, nothing held
    with pytest.raises(JobEnded):  # the runner may not send a create for it any more
        await db.jobs.mark_submitting(job.id)
    assert await db.ledger.verify() == []


async def test_cancel_refuses_a_submitted_job_and_an_unknown_one(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    await db.jobs.mark_submitting(job.id)
    assert await db.jobs.cancel_queued(job.id, ALICE) is False
    assert (await db.jobs.get(job.id)).state == "submitting"  # type: ignore[union-attr]
    assert await kinds(db, job.id) == ["hold"]
    with pytest.raises(JobNotFound):
        await db.jobs.cancel_queued("0" * 32, ALICE)


async def test_cancel_after_an_admin_refund_releases_nothing_twice(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    assert await db.ledger.refund(job.id, BOB, "refunded by an admin") is True  # released while still queued
    assert await db.jobs.cancel_queued(job.id, ALICE) is True
    assert await kinds(db, job.id) == ["hold", "release"]
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (200, 0)
    assert await db.ledger.verify() == []


async def test_cancel_racing_the_submission_wins_or_loses_never_both(db: Database) -> None:
    """Each round starts a cancel and the runner's mark_submitting together: exactly one of them takes effect."""
    await db.ledger.adjust(GUILD, ALICE, 10_000, None, "test credits")
    await db.guilds.update(GUILD, max_jobs_per_member=50, cooldown_seconds=0)
    outcomes = {"cancelled": 0, "submitted": 0}
    for _ in range(40):
        job = await db.jobs.create_with_hold(request())
        cancel, submit = await asyncio.gather(db.jobs.cancel_queued(job.id, ALICE), db.jobs.mark_submitting(job.id),
                                              return_exceptions=True)
        if cancel is True:
            assert isinstance(submit, JobEnded), submit
            assert await kinds(db, job.id) == ["hold", "release"]
            outcomes["cancelled"] += 1
        else:
            assert cancel is False and not isinstance(submit, BaseException), (cancel, submit)
            assert (await db.jobs.get(job.id)).state == "submitting"  # type: ignore[union-attr]
            assert await kinds(db, job.id) == ["hold"]
            outcomes["submitted"] += 1
    assert sum(outcomes.values()) == 40
    assert await db.ledger.verify() == []
