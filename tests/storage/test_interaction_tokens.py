"""Interaction tokens (a secret that lets anyone post as the bot in that interaction) do not outlive their use:
settling a job forgets its token in the same transaction, and a sweep forgets the ones that expired."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.db import Database

from .conftest import ALICE, BOB, T0, Clock, request, run_to_completed

TOKEN = "tok-SECRET-interaction"


def with_token(user: int = ALICE, token: str = TOKEN, expires_at: float | None = T0 + 900) -> object:
    return request(user, interaction_application_id=7, interaction_token=token,
                   interaction_token_expires_at=expires_at)


async def stored_tokens(db: Database) -> list[tuple[str | None, float | None, int | None]]:
    rows = await db.fetchall(
        "SELECT interaction_token, interaction_token_expires_at, interaction_application_id FROM jobs ORDER BY seq")
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.parametrize("outcome", ["delivered", "failed from queued", "failed from completed"])
async def test_settlement_forgets_the_token_in_the_same_transaction(db: Database, db_path: Path,
                                                                    outcome: str) -> None:
    await db.guilds.update(1001, cooldown_seconds=0)
    job = await db.jobs.create_with_hold(with_token())  # type: ignore[arg-type]
    kept = await db.jobs.create_with_hold(with_token(token="tok-other", user=BOB))  # type: ignore[arg-type]
    assert job.interaction_token == TOKEN
    if outcome == "delivered":
        await run_to_completed(db, job.id)
        assert await db.jobs.finish_delivered(job.id, "https://discord.com/channels/1/2/3") is True
    elif outcome == "failed from queued":
        assert await db.jobs.finish_failed(job.id, "upstream_error", "failed") is True
    else:
        await run_to_completed(db, job.id)
        assert await db.jobs.finish_failed(job.id, "undeliverable", "failed") is True
    settled = await db.jobs.get(job.id)
    assert settled is not None and settled.is_finished
    assert (settled.interaction_token, settled.interaction_token_expires_at, settled.interaction_application_id) \
        == (None, None, None)
    assert not settled.interaction_usable(T0)
    assert (await db.jobs.get(kept.id)).interaction_token == "tok-other"  # type: ignore[union-attr]
    # A second (refused) settlement changes nothing, and the token is gone from the table itself.
    assert await db.jobs.finish_failed(job.id, "late", "late") is False
    rows = await db.fetchall("SELECT id FROM jobs WHERE interaction_token = ?", (TOKEN,))
    assert rows == []
    assert await db.ledger.verify() == []


async def test_the_sweep_forgets_only_expired_tokens_and_keeps_updated_at(db: Database, clock: Clock) -> None:
    await db.guilds.update(1001, cooldown_seconds=0, max_jobs_per_member=5, starting_credits=1000)
    early = await db.jobs.create_with_hold(with_token(token="tok-early", expires_at=T0 + 900))  # type: ignore[arg-type]
    late = await db.jobs.create_with_hold(with_token(token="tok-late", expires_at=T0 + 2000))  # type: ignore[arg-type]
    unknown = await db.jobs.create_with_hold(with_token(token="tok-unknown", expires_at=None))  # type: ignore[arg-type]
    none = await db.jobs.create_with_hold(request())
    await db.jobs.mark_submitting(early.id)  # a job in progress: the sweep is for these
    before = {j.id: j.updated_at for j in await db.jobs.unfinished()}

    clock.advance(10)
    assert await db.jobs.forget_expired_interactions(T0 + 899) == 1  # only the one that never had an expiry
    assert await db.jobs.forget_expired_interactions(T0 + 900) == 1  # expired at exactly its time
    assert await db.jobs.forget_expired_interactions(T0 + 1000) == 0
    tokens = {j.id: j.interaction_token for j in await db.jobs.unfinished()}
    assert tokens == {early.id: None, late.id: "tok-late", unknown.id: None, none.id: None}
    # updated_at tells the runner whether a job was resumed after a restart: the sweep must not move it.
    assert {j.id: j.updated_at for j in await db.jobs.unfinished()} == before
    assert await db.jobs.forget_expired_interactions(T0 + 2000) == 1
    assert all(t[0] is None and t[1] is None and t[2] is None for t in await stored_tokens(db))
