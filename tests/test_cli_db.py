"""`sora-bot db upgrade` and `sora-bot db copy`: real processes, a real SQLite file, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import asyncpg
import pytest

import storage.copy as copy_module
from storage.copy import TABLES, CopyRefused, copy_database
from storage.db import Database
from storage.jobs import NewJob
from storage.migrate import latest_version

ROOT = Path(__file__).resolve().parents[1]
GUILD, OTHER = 1001, 2002


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """`python -m bot ARGS` with exactly `env` (plus PATH and PYTHONPATH); (exit code, stdout, stderr)."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(cwd), **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=full, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def fill(path: Path) -> dict[str, int]:
    """An SQLite database with a bit of everything: settings, a block, refills, jobs in every state, refunds."""
    t = [1_736_942_400.0]  # 2025-01-15 12:00 UTC, moved forward by hand
    db = await Database.open(path, clock=lambda: t[0])
    try:
        await db.guilds.update(GUILD, starting_credits=500, cooldown_seconds=0, max_jobs_per_member=5,
                               refill_amount=300, refill_period="daily", allowed_channel_ids=[500, 501],
                               banned_words=["spam", "ünïcode"])
        await db.guilds.update(OTHER, starting_credits=0)
        await db.guilds.block(GUILD, 99, "spam", actor_id=1)
        jobs = []
        for user in (11, 22, 33):
            for duration in (4, 8):
                jobs.append(await db.jobs.create_with_hold(NewJob(GUILD, 500, user, f"p{user}", duration,
                                                                  25 * duration, interaction_token="tok")))
        delivered, failed, refunded, released, running, *_ = jobs
        for job in (delivered, refunded, running):
            await db.jobs.mark_submitting(job.id)
            await db.jobs.mark_running(job.id, f"task-{job.id}")
        for job in (delivered, refunded):
            await db.jobs.mark_completed(job.id, "https://cdn/v.mp4", None)
            await db.jobs.finish_delivered(job.id, "https://discord.com/channels/1/2/3")
        await db.jobs.finish_failed(failed.id, "upstream_error", "failed")
        await db.ledger.refund(refunded.id, actor_id=1, reason="bad video")
        await db.ledger.refund(released.id, actor_id=1, reason="changed mind")
        await db.ledger.adjust(GUILD, 44, 1_000, actor_id=1, reason="gift")
        await db.ledger.balance(OTHER, 11)  # a balance row with no entries (no starting credits there)
        t[0] += 86_400
        await db.ledger.balance(GUILD, 22)  # the next day's refill
        assert await db.ledger.verify() == []
        return {table: int((await db.fetchone(f"SELECT COUNT(*) AS n FROM {table}"))["n"]) for table in TABLES}
    finally:
        await db.close()


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in key order, as plain tuples."""
    order = {"jobs": "seq", "ledger": "id", "guild_settings": "guild_id"}
    result = {}
    for table in TABLES:
        key = order.get(table, "guild_id, user_id" if table != "refill_periods" else "guild_id, user_id, period_key")
        if table == "ledger_erasure":
            key = "guild_id"
        result[table] = [tuple(r) for r in await db.fetchall(f"SELECT * FROM {table} ORDER BY {key}")]
    return result


async def test_copy_moves_every_row_and_checks_the_books(tmp_path: Path, pg_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_module, "BATCH", 3)  # many batches even for a small database
    source_path = tmp_path / "bot.db"
    counts = await fill(source_path)
    assert counts["ledger"] > 10 and counts["refill_periods"] > 0
    seen: list[tuple[str, int, int]] = []
    source, target = await Database.open(source_path), await Database.open(pg_url)
    try:
        report = await copy_database(source, target, lambda t, d, n: seen.append((t, d, n)))
        assert report.rows == counts
        assert report.balances_checked == counts["balances"]
        assert await snapshot(source) == await snapshot(target)  # the same rows, value for value
        assert await target.ledger.verify() == []
        assert ("ledger", counts["ledger"], counts["ledger"]) in seen
        # The target carries on: ids continue after the copied ones, the rules still apply.
        job = await target.jobs.create_with_hold(NewJob(GUILD, 500, 44, "after the move", 4, 100))
        assert job.seq == counts["jobs"] + 1
        assert (await target.ledger.balance(GUILD, 44)).available == 1_400
        assert await target.ledger.verify() == []
    finally:
        await source.close()
        await target.close()


async def test_copy_refuses_a_target_that_is_not_empty(tmp_path: Path, pg_url: str) -> None:
    source_path = tmp_path / "bot.db"
    await fill(source_path)
    target = await Database.open(pg_url)
    source = await Database.open(source_path)
    try:
        await target.guilds.update(7, starting_credits=1)
        with pytest.raises(CopyRefused, match="not empty"):
            await copy_database(source, target)
        assert await target.fetchall("SELECT 1 FROM jobs") == []
        assert len(await target.fetchall("SELECT 1 FROM guild_settings")) == 1
    finally:
        await source.close()
        await target.close()


async def test_a_copy_that_does_not_add_up_is_rolled_back(tmp_path: Path, pg_url: str) -> None:
    """A source whose balance cache disagrees with its ledger: nothing is committed on the target."""
    source_path = tmp_path / "bot.db"
    await fill(source_path)
    with sqlite3.connect(source_path) as conn:
        conn.execute("UPDATE balances SET available = available + 5 WHERE user_id = 44")
    source, target = await Database.open(source_path), await Database.open(pg_url)
    try:
        with pytest.raises(CopyRefused, match="balances differ"):
            await copy_database(source, target)
        for table in TABLES:
            assert await target.fetchall(f"SELECT 1 FROM {table}") == [], table
    finally:
        await source.close()
        await target.close()


async def test_cli_copy_then_refuses_a_second_copy(tmp_path: Path, pg_empty_url: str) -> None:
    source_path = tmp_path / "bot.db"
    counts = await fill(source_path)
    secret_url = pg_empty_url.replace("postgres@", "postgres:hunter2-secret@")  # trust auth ignores it
    env = {"DATABASE_URL": secret_url}
    code, out, err = await cli("db", "copy", "--from", str(source_path), "--progress", "always", env=env,
                               cwd=tmp_path)
    assert code == 0, err
    assert f"ledger {counts['ledger']:,}" in out and "balances equal their ledger sums" in out
    assert "rows" in err  # tqdm's bar on stderr
    assert "hunter2-secret" not in out + err
    code, out, err = await cli("db", "copy", "--from", str(source_path), env=env, cwd=tmp_path)
    assert code == 1
    assert "not empty" in err and "hunter2-secret" not in out + err
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM ledger") == counts["ledger"]
    finally:
        await conn.close()


async def test_cli_copy_needs_database_url_and_a_file(tmp_path: Path) -> None:
    code, _, err = await cli("db", "copy", "--from", str(tmp_path / "bot.db"), env={}, cwd=tmp_path)
    assert code == 2 and "DATABASE_URL" in err
    code, _, err = await cli("db", "copy", "--from", str(tmp_path / "missing.db"),
                             env={"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}, cwd=tmp_path)
    assert code == 2 and "not a file" in err


async def test_cli_rejects_a_malformed_database_url_without_echoing_it(tmp_path: Path) -> None:
    code, out, err = await cli("db", "upgrade", env={"DATABASE_URL": "mysql://root:topsecret@db/x"}, cwd=tmp_path)
    assert code == 2 and "DATABASE_URL" in err and "postgresql://" in err
    assert "topsecret" not in out + err


@pytest.fixture
def empty_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An SQLite path that does not exist yet, or an empty PostgreSQL database's URL."""
    if backend == "sqlite":
        return str(tmp_path / "data" / "bot.db")
    return str(request.getfixturevalue("pg_empty_url"))


async def test_cli_upgrade_applies_migrations_and_refuses_a_newer_database(
        backend: str, empty_target: str, tmp_path: Path) -> None:
    path, url = Path(empty_target), empty_target
    env = {"DATABASE_PATH": empty_target} if backend == "sqlite" else {"DATABASE_URL": empty_target}
    code, out, err = await cli("db", "upgrade", env=env, cwd=tmp_path)
    assert code == 0, err
    assert f"schema version {latest_version()}" in out
    if backend == "sqlite":
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
            conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    else:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT MAX(version) FROM schema_version") == latest_version()
            await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, 'future')", latest_version() + 1)
        finally:
            await conn.close()
    code, out, err = await cli("db", "upgrade", env=env, cwd=tmp_path)
    assert code == 1 and "newer" in err


async def test_check_opens_the_postgresql_database_and_names_it_without_the_password(tmp_path: Path,
                                                                                      pg_url: str) -> None:
    from bot.checks import run_checks
    from bot.config import load_settings

    closed = "http://127.0.0.1:9"  # nothing listens: those checks fail fast, the database one must not
    settings = load_settings({"SORA_API_KEY": "sk-test-123", "SORA_API_BASE": closed, "DISCORD_API_BASE": closed,
                              "DATABASE_URL": pg_url.replace("postgres@", "postgres:pw-secret-1@"),
                              "DATABASE_PATH": str(tmp_path / "unused.db")}, dotenv=None, require_discord=False)
    lines: list[str] = []
    await run_checks(settings, say=lines.append)
    database = [line for line in lines if line.startswith(("✓ database", "✗ database"))]
    assert database == [f"✓ database: {pg_url.replace('postgres@', '')} is writable and up to date"]
    assert not any("pw-secret-1" in line for line in lines)
    assert not (tmp_path / "unused.db").exists()  # DATABASE_PATH is ignored when DATABASE_URL is set
    assert "pw-secret-1" not in repr(settings)


async def test_cli_upgrade_names_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    from tests.pgserver import free_port

    url = f"postgresql://sora:pw-secret-2@127.0.0.1:{free_port()}/sora"
    code, out, err = await cli("db", "upgrade", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert code == 1
    assert f"postgresql://127.0.0.1:{url.rsplit(':', 1)[1]}" in err and "could not be opened" in err
    assert "pw-secret-2" not in out + err and "Traceback" not in err
