"""Erasing a member's or a server's data ends their unfinished jobs first (held credits released, jobs failed
with error_code "erased"), then deletes every row, in one transaction."""

from __future__ import annotations

import pytest

from storage.db import Database
from storage.jobs import ERASED

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD, request, run_to_completed


async def jobs_in_every_state(db: Database, user: int, guild_id: int = GUILD) -> dict[str, str]:
    """One job queued, submitting, running, completed, delivered and failed; id by state."""
    await db.guilds.update(guild_id, cooldown_seconds=0, max_jobs_per_member=10, starting_credits=10_000)
    ids: dict[str, str] = {}
    for state in ("queued", "submitting", "running", "completed", "delivered", "failed"):
        job = await db.jobs.create_with_hold(request(user, guild_id=guild_id))
        ids[state] = job.id
        if state == "submitting":
            await db.jobs.mark_submitting(job.id)
        elif state == "running":
            await db.jobs.mark_submitting(job.id)
            await db.jobs.mark_running(job.id, "task-r")
        elif state in ("completed", "delivered"):
            await run_to_completed(db, job.id)
        if state == "delivered":
            await db.jobs.finish_delivered(job.id, None)
        elif state == "failed":
            await db.jobs.finish_failed(job.id, "upstream_error", "failed")
    return ids


@pytest.mark.parametrize("scope", ["member", "server"])
async def test_erasure_ends_unfinished_jobs_then_deletes_everything(db: Database, scope: str) -> None:
    ids = await jobs_in_every_state(db, ALICE)
    bob = await db.jobs.create_with_hold(request(BOB))
    other = await jobs_in_every_state(db, ALICE, guild_id=OTHER_GUILD)
    await db.ledger.refund(ids["running"], actor_id=BOB, reason="stuck")  # already released by an admin
    stored = len(await db.fetchall("SELECT 1 FROM ledger WHERE guild_id = ? AND user_id = ?", (GUILD, ALICE)))

    erasure = await db.reports.erase(GUILD, ALICE if scope == "member" else None)

    unfinished = [ids[s] for s in ("queued", "submitting", "running", "completed")]
    expected = unfinished if scope == "member" else [*unfinished, bob.id]
    assert sorted(erasure.ended_job_ids) == sorted(expected)
    if scope == "member":
        assert erasure.counts["ledger"] == stored  # what was stored before, not the releases written on the way
        assert erasure.counts["jobs"] == 6
        assert await db.jobs.get(bob.id) is not None  # another member's job goes on
    for table in ("ledger", "jobs", "balances"):
        rows = await db.fetchall(f"SELECT 1 FROM {table} WHERE guild_id = ? AND user_id = ?", (GUILD, ALICE))
        assert rows == [], table
    assert await db.ledger.verify() == []
    # Nothing of the other server was touched, its unfinished jobs included.
    assert [j.id for j in await db.jobs.unfinished_for(OTHER_GUILD, ALICE)] == [
        other[s] for s in ("queued", "submitting", "running", "completed")]
    # The ledger is append-only again afterwards.
    assert await db.fetchall("SELECT * FROM ledger_erasure") == []


async def test_ending_is_logged_with_the_erased_code(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Inside the transaction the jobs are failed with code "erased" (the audit triggers accept the move) before
    their rows go; the log names the jobs that were stopped."""
    import logging

    caplog.set_level(logging.INFO, logger="storage")
    job = await db.jobs.create_with_hold(request(ALICE))
    await db.jobs.mark_submitting(job.id)
    erasure = await db.reports.erase(GUILD, ALICE)
    assert erasure.ended_job_ids == (job.id,) and ERASED == "erased"
    assert any("ended unfinished jobs" in r.getMessage() and getattr(r, "jobs", "") == job.id
               for r in caplog.records)


async def test_unfinished_for_scopes_to_the_server_and_member(db: Database) -> None:
    await db.guilds.update(GUILD, cooldown_seconds=0)
    a = await db.jobs.create_with_hold(request(ALICE))
    b = await db.jobs.create_with_hold(request(BOB))
    await db.jobs.create_with_hold(request(ALICE, guild_id=OTHER_GUILD))
    assert [j.id for j in await db.jobs.unfinished_for(GUILD, ALICE)] == [a.id]
    assert [j.id for j in await db.jobs.unfinished_for(GUILD)] == [a.id, b.id]
    await db.jobs.finish_failed(a.id, "x", "x")
    assert [j.id for j in await db.jobs.unfinished_for(GUILD)] == [b.id]
