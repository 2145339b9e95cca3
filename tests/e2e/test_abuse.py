"""Abuse through the real bot: a member spamming /sora generate, SQL metacharacters wherever text is stored,
and nasty prompts that must never ping anyone or break a message."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest
from fake_discord import InteractionError

from bot.prompts import check_prompt
from tests.e2e.harness import InProcessBot, World, admin_as, private_reply, video_posts
from tests.helpers import LIVE_MENTION

NO_PINGS = {"parse": []}
SQL = "'; DROP TABLE jobs; --"
TABLES = {"jobs", "ledger", "balances", "guild_settings", "blocked_members"}


async def roomy(world: World, bot: InProcessBot, *, per_member: int, credits: int = 100_000) -> None:
    await bot.db.guilds.update(world.guild.id, cooldown_seconds=0, max_jobs_per_member=per_member,
                               max_jobs_per_guild=20)
    await bot.db.ledger.set_balance(world.guild.id, world.member.id, credits, None, "abuse test")


async def db_intact(bot: InProcessBot) -> None:
    names = {r["name"] for r in await bot.db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names >= TABLES, TABLES - names
    assert (await bot.db.fetchone("PRAGMA integrity_check"))[0] == "ok"
    assert await bot.db.ledger.verify() == []


def without_requester(text: str, world: World) -> str:
    """The text minus the one mention the bot means to make (the requester, never pinged by status messages)."""
    return text.replace(f"<@{world.member.id}>", "")


@pytest.mark.parametrize("cooldown", [0, 30])
async def test_fifty_generates_in_a_second_hold_at_most_the_member_limit(world: World, bot: InProcessBot,
                                                                         cooldown: int) -> None:
    await roomy(world, bot, per_member=3)
    await bot.db.guilds.update(world.guild.id, cooldown_seconds=cooldown)
    world.sim.state.configure({"processing_seconds": 1000})
    interactions = []
    for n in range(50):  # 50 in about a second, interleaved with the bot's work
        interactions.append(await world.generate(prompt=f"spam {n}"))
        await asyncio.sleep(0.02)
    responses = await asyncio.gather(*(i.wait_response(3) for i in interactions))
    assert all(r.type == 5 and r.data["flags"] & 64 for r in responses)
    assert not any(i.rejected_callbacks for i in interactions)  # none later than Discord's 3 s (10062)
    answers = await asyncio.gather(*(i.wait_original(lambda m: not m.loading, timeout=20) for i in interactions))
    accepted = [a for a in answers if "held" in a.content]
    refused = [a for a in answers if "held" not in a.content]
    limit = 3 if cooldown == 0 else 1
    assert len(accepted) == limit
    assert all("Something went wrong" not in a.content and a.allowed_mentions == NO_PINGS for a in refused)
    assert {("limit" in a.content.lower() or "wait" in a.content.lower() or "at once" in a.content.lower())
            for a in refused} == {True}, {a.content for a in refused}
    holds = await bot.db.fetchall("SELECT * FROM ledger WHERE kind = 'hold'")
    assert len(holds) == limit
    balance = await bot.db.ledger.balance(world.guild.id, world.member.id)
    assert (balance.available, balance.held) == (100_000 - 100 * limit, 100 * limit)
    assert len(world.sim.state.requests_to("/v1/videos/generations", "POST")) <= limit
    await db_intact(bot)


async def test_sql_metacharacters_are_stored_and_echoed_verbatim(world: World, bot: InProcessBot) -> None:
    await roomy(world, bot, per_member=5)
    nasty = [SQL, 'Robert"); DELETE FROM ledger WHERE ("1"="1', "it's a \"quote\" \\ back\\slash", "nul\x00byte %s ?"]

    # Prompts: stored as cleaned (controls such as NUL removed, nothing else), sent upstream as stored.
    for prompt in nasty:
        answer = await private_reply(await world.generate(prompt=prompt))
        assert "held" in answer.content, (prompt, answer.content)
    jobs = await bot.wait_finished(len(nasty))
    assert [j.prompt for j in jobs] == [check_prompt(p) for p in nasty]
    assert jobs[-1].prompt == "nulbyte %s ?"
    assert all(j.state == "delivered" for j in jobs)
    sent = [r.json["input"]["prompt"] for r in world.sim.state.requests_to("/v1/videos/generations", "POST")]
    assert sorted(sent) == sorted(j.prompt for j in jobs)

    # A block reason: stored verbatim, shown to admins without pinging.
    reason = f"{SQL} @everyone \"x\" \\"
    await private_reply(await admin_as(world, "block", user=world.other.id, reason=reason))
    assert await bot.db.guilds.is_blocked(world.guild.id, world.other.id) == reason
    shown = await private_reply(await admin_as(world, "quota show", user=world.other.id))
    assert shown.allowed_mentions == NO_PINGS
    refused = await private_reply(await world.generate(user=world.other))
    assert "blocked" in refused.content and refused.allowed_mentions == NO_PINGS

    # Banned words: stored verbatim, listed without pinging, and they work.
    words = "DROP TABLE, O'Brien, \"quoted\""
    listed = await private_reply(await admin_as(world, "config words", action="add", words=words))
    assert listed.allowed_mentions == NO_PINGS
    assert (await bot.db.guilds.get(world.guild.id)).banned_words == ("DROP TABLE", "O'Brien", '"quoted"')
    refused = await private_reply(await world.generate(prompt=SQL))
    assert "doesn't allow" in refused.content
    refused = await private_reply(await world.generate(prompt="a portrait of o'brien"))
    assert "doesn't allow" in refused.content

    await db_intact(bot)
    conn = sqlite3.connect(bot.db.path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == len(nasty)
    finally:
        conn.close()


NASTY_PROMPTS = [
    "\u202eevil reversed text\u202c and an \u200f RTL mark \u200e",
    "```py\nimport os; os.system('rm -rf /')\n``` then a cat",
    "**bold** __under__ ~~strike~~ ||spoiler|| # Heading\n> quote\n- list",
    "@here look at this",
    "@everyone look at this",
    "ping <@123456789012345678> and <@!123456789012345678>",
    "role <@&123456789012345678> and channel <#1> and </sora generate:1>",
    "[click me](https://evil.example/phish) <https://evil.example>",
    "<t:0:R> time and :emoji: \U0001f98a fox and z\u0335\u0321a\u0336l\u0337g\u0338o",
    "`@everyone` in code and \\@here escaped",
    "@\u200beveryone pre-escaped and @@here doubled",
    "x" * 4990 + " <@1>@here",
    "a" * 5000,
]


async def test_nasty_prompts_never_ping_and_never_break_a_message(world: World, bot: InProcessBot) -> None:
    await roomy(world, bot, per_member=20)
    with pytest.raises(InteractionError):  # Discord's own bound on the option: the bot never sees it
        await world.generate(prompt="a" * 5001)
    for prompt in NASTY_PROMPTS:
        answer = await private_reply(await world.generate(prompt=prompt))
        assert "held" in answer.content, (prompt[:40], answer.content)
        assert answer.allowed_mentions == NO_PINGS
    jobs = await bot.wait_finished(len(NASTY_PROMPTS), timeout=40)
    assert [j.state for j in jobs] == ["delivered"] * len(NASTY_PROMPTS)
    for job in jobs:
        assert job.status_message_id is not None
        status = world.fake.message(job.status_message_id)
        assert status.allowed_mentions == NO_PINGS, job.prompt[:40]
        assert len(status.content) <= 2000
        assert not LIVE_MENTION.search(without_requester(status.content, world)), status.content[:300]
        assert not re.search("[\u202a-\u202e\u2066-\u2069]", status.content)
        assert status.content.count("```") % 2 == 0
        for edit in status.history:  # every earlier version too
            assert not LIVE_MENTION.search(without_requester(edit.get("content") or "", world))
        [post] = video_posts(world, job.id)
        assert post.allowed_mentions["parse"] == [] and [int(u) for u in post.allowed_mentions["users"]] == [
            world.member.id]
        assert not LIVE_MENTION.search(without_requester(post.content, world)), post.content[:300]
        assert len(post.content) <= 2000
    assert sorted(r.json["input"]["prompt"] for r in world.sim.state.requests_to("/v1/videos/generations")) == sorted(
        check_prompt(p) for p in NASTY_PROMPTS)
    await db_intact(bot)


