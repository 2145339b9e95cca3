"""Property-based: random sequences of ledger operations agree with a tiny in-memory model of the rules.

The same machine runs on SQLite (a temp file per example) and on PostgreSQL (the session's test database,
wiped per example).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from storage.db import Database
from storage.errors import NotEnoughCredits, TooManyJobs
from tests.pgserver import wipe

from .conftest import GUILD, Clock, request, run_to_completed

T = TypeVar("T")
MEMBERS = (1, 2, 3)
START = 300
REFILL = 200


class LedgerMachine(RuleBasedStateMachine):
    """The model: per member available/held; per job its owner, cost, state, and what happened to its money."""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.clock = Clock()
        self.db = self.run(self.open_database())
        self.run(self.db.guilds.update(GUILD, starting_credits=START, cooldown_seconds=0, max_jobs_per_member=3,
                                             refill_amount=REFILL, refill_period="daily"))
        self.available = dict.fromkeys(MEMBERS, START)
        self.held = dict.fromkeys(MEMBERS, 0)
        self.fate: dict[str, str] = {}  # job id -> held | charged | released | refunded (the money)
        self.state: dict[str, str] = {}  # job id -> open | delivered | failed (the job)
        self.owner: dict[str, tuple[int, int]] = {}  # job id -> (member, cost)

    async def open_database(self) -> Database:
        return await Database.open(self.dir / "bot.db", clock=self.clock)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout=20))

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def open_jobs(self, user: int) -> int:
        return sum(1 for j, (u, _) in self.owner.items() if u == user and self.state[j] == "open")

    @rule(target=jobs, user=st.sampled_from(MEMBERS), duration=st.sampled_from((4, 8, 12)))
    def create(self, user: int, duration: int) -> str:
        cost = 25 * duration
        try:
            job = self.run(self.db.jobs.create_with_hold(request(user, duration=duration)))
        except TooManyJobs:
            assert self.open_jobs(user) >= 3
            return "refused"
        except NotEnoughCredits as refusal:
            assert self.open_jobs(user) < 3
            assert self.available[user] < cost
            assert refusal.available == self.available[user]
            return "refused"
        assert self.open_jobs(user) < 3 and self.available[user] >= cost
        self.available[user] -= cost
        self.held[user] += cost
        self.fate[job.id] = "held"
        self.state[job.id] = "open"
        self.owner[job.id] = (user, cost)
        return job.id

    @rule(job=jobs)
    def deliver(self, job: str) -> None:
        if job == "refused":
            return
        if self.state[job] != "open":
            assert self.run(self.db.jobs.finish_delivered(job, None)) is False
            return
        self.run(run_to_completed(self.db, job))
        assert self.run(self.db.jobs.finish_delivered(job, None)) is True
        self.state[job] = "delivered"
        if self.fate[job] == "held":  # an admin may have released it already: then it is free
            user, cost = self.owner[job]
            self.held[user] -= cost
            self.fate[job] = "charged"

    @rule(job=jobs)
    def fail(self, job: str) -> None:
        if job == "refused":
            return
        did = self.run(self.db.jobs.finish_failed(job, "upstream_error", "failed"))
        assert did is (self.state[job] == "open")
        if did:
            self.state[job] = "failed"
            if self.fate[job] == "held":
                user, cost = self.owner[job]
                self.held[user] -= cost
                self.available[user] += cost
                self.fate[job] = "released"

    @rule(job=jobs)
    def admin_refund(self, job: str) -> None:
        if job == "refused":
            return
        did = self.run(self.db.ledger.refund(job, actor_id=99, reason="admin"))
        user, cost = self.owner[job]
        before = self.fate[job]
        if before == "held":
            self.held[user] -= cost
            self.available[user] += cost
            self.fate[job] = "released"
        elif before == "charged":
            self.available[user] += cost
            self.fate[job] = "refunded"
        assert did is (before in ("held", "charged"))

    @rule(user=st.sampled_from(MEMBERS), delta=st.integers(-500, 500))
    def adjust(self, user: int, delta: int) -> None:
        balance = self.run(self.db.ledger.adjust(GUILD, user, delta, actor_id=99, reason="admin"))
        self.available[user] = max(0, self.available[user] + delta)
        assert balance.available == self.available[user]

    @rule(user=st.sampled_from(MEMBERS), amount=st.integers(0, 1_000))
    def set_balance(self, user: int, amount: int) -> None:
        self.run(self.db.ledger.set_balance(GUILD, user, amount, actor_id=99, reason="admin"))
        self.available[user] = amount

    @rule(days=st.integers(1, 3))
    def time_passes(self, days: int) -> None:
        # The invariant below reads every balance before any other rule runs, so each member gets this
        # period's top-up right away: available + held up to REFILL (held credits are still theirs), never
        # above what they already have.
        self.clock.advance(days * 86_400)
        for user in MEMBERS:
            self.available[user] += max(0, REFILL - self.available[user] - self.held[user])

    @invariant()
    def balances_match_the_model(self) -> None:
        for user in MEMBERS:
            balance = self.run(self.db.ledger.balance(GUILD, user))
            assert (balance.available, balance.held) == (self.available[user], self.held[user])

    @invariant()
    def the_audit_is_clean(self) -> None:
        assert self.run(self.db.ledger.verify()) == []


class PostgresLedgerMachine(LedgerMachine):
    url = ""  # set by the pg_model_url fixture before the test case runs

    async def open_database(self) -> Database:
        assert self.url.startswith("postgresql://"), "the pg_model_url fixture did not run"
        await wipe(self.url)
        return await Database.open(self.url, clock=self.clock)


LedgerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerModel = LedgerMachine.TestCase

# Fewer examples: each step is a few network round trips instead of an in-process call.
PostgresLedgerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture
def pg_model_url(pg_shared: dict[str, str]) -> None:
    PostgresLedgerMachine.url = pg_shared["url"]


@pytest.mark.usefixtures("pg_model_url")
class TestLedgerModelPostgres(PostgresLedgerMachine.TestCase):  # type: ignore[name-defined,misc]
    pass
