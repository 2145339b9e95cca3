"""Stopping and starting the bot: state survives, SIGTERM ends cleanly, a missing token stops it with one line."""

from __future__ import annotations

from storage.db import Database
from tests.e2e.harness import InProcessBot, SubprocessBot, World, admin_as, private_reply, run_cli


async def test_restart_keeps_balances_settings_and_blocks(world: World) -> None:
    runner = InProcessBot(world)
    await runner.start()
    try:
        await private_reply(await admin_as(world, "quota set", user=world.other.id, amount=777))
        await private_reply(await admin_as(world, "config defaults", starting_credits=450, default_duration=8))
        await private_reply(await admin_as(world, "config refill", amount=600, period="weekly"))
        await private_reply(await admin_as(world, "config words", action="add", words="secret phrase"))
        await private_reply(await admin_as(world, "block", user=world.member.id, reason="too loud"))
        before = await runner.db.guilds.get(world.guild.id)
    finally:
        await runner.stop()

    await runner.start()
    try:
        assert await runner.db.guilds.get(world.guild.id) == before
        assert await runner.db.guilds.is_blocked(world.guild.id, world.member.id) == "too loud"
        balance = await private_reply(await world.fake.slash(world.guild.id, world.channel.id, world.other.id,
                                                             "sora balance"))
        assert "**777 credits**" in balance.content and "every week" in balance.content
        refused = await private_reply(await world.generate())
        assert "blocked" in refused.content and "too loud" in refused.content
        shown = await private_reply(await admin_as(world, "config show"))
        assert "Starting credits for new members: 450" in shown.content and "Blocked words: 1" in shown.content
        assert await runner.db.ledger.verify() == []
    finally:
        await runner.stop()
    assert world.fake.sync_count == 1  # nothing changed: no second sync


async def test_sigterm_ends_cleanly_with_a_job_in_flight(world: World) -> None:
    world.sim.state.configure({"processing_seconds": 600})  # still rendering when the signal comes
    bot = SubprocessBot(world)
    await bot.start()
    await world.fake.sync_wait_commands(timeout=10)
    answer = await private_reply(await admin_as(world, "quota set", user=world.member.id, amount=300))
    assert "300 credits" in answer.content
    accepted = await private_reply(await world.generate(duration=4))
    assert "held" in accepted.content
    await world.fake.wait_for(lambda: world.sim.state.requests_to("/v1/tasks/", "GET"), timeout=10, recheck=0.05,
                              what="the bot polls its task")

    code = await bot.terminate()
    log = bot.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert "shutting down" in log
    assert world.fake.token not in log and "sk-test-key-123" not in log

    db = await Database.open(world.tmp / "bot.db")
    try:
        assert await db.ledger.verify() == []
        [job] = await db.jobs.unfinished()  # not lost: resumed on the next start
        assert job.state == "running" and job.task_id
        balance = await db.ledger.balance(world.guild.id, world.member.id)
        assert (balance.available, balance.held) == (200, 100)
    finally:
        await db.close()


async def test_missing_token_stops_with_one_line(world: World) -> None:
    env = {k: v for k, v in world.env().items() if k != "DISCORD_TOKEN"}
    code, out, err = await run_cli(env=env, cwd=world.tmp)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, lines
    assert "DISCORD_TOKEN" in lines[0]
    assert world.fake.requests == []  # never tried to log in


async def test_malformed_api_key_stops_with_one_line(world: World) -> None:
    code, out, err = await run_cli("run", env={**world.env(), "SORA_API_KEY": "not-a-key"}, cwd=world.tmp)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and "SORA_API_KEY" in lines[0], lines
    assert "not-a-key" not in lines[0]
