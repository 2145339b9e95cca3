"""The real bot, run against the local Discord and the video API simulator, in-process or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_discord import FakeDiscord, patch_discord_py
from PIL import Image

from bot.app import open_services
from bot.config import Settings, load_settings
from bot.discord_app.client import SoraBot
from bot.simulator.app import Simulator
from storage.db import Database
from storage.models import Job

ROOT = Path(__file__).resolve().parents[2]
MANAGE_GUILD = 1 << 5


def png(width: int = 640, height: int = 360, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buf, fmt)
    return buf.getvalue()


@dataclass
class World:
    """The people and places of a test server."""

    fake: FakeDiscord
    sim: Simulator
    tmp: Path
    guild: Any = None
    channel: Any = None
    admin: Any = None
    member: Any = None
    other: Any = None
    extra_env: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None  # a PostgreSQL database instead of the SQLite file (see `both_backends`)

    @property
    def database(self) -> str | Path:
        """What the bot's Database.open() gets: the PostgreSQL URL, or the SQLite file in tmp."""
        return self.database_url or self.tmp / "bot.db"

    def env(self) -> dict[str, str]:
        return {
            **self.fake.env(),
            "SORA_API_KEY": "sk-test-key-123",
            "SORA_API_BASE": self.sim.base_url,
            "DATABASE_PATH": str(self.tmp / "bot.db"),
            "VIDEO_DIR": str(self.tmp / "videos"),
            "SORA_TIME_SCALE": "0.01",
            "LOG_LEVEL": "INFO",
            **({"DATABASE_URL": self.database_url} if self.database_url else {}),
            **self.extra_env,
        }

    def settings(self) -> Settings:
        return load_settings(self.env(), dotenv=None)

    async def generate(self, user: Any = None, **options: Any) -> Any:
        user = user or self.member
        attachments = options.pop("attachments", None)
        options.setdefault("prompt", "a red fox running through snow")
        return await self.fake.slash(self.guild.id, self.channel.id, user.id, "sora generate", options=options,
                                     attachments=attachments)



@contextlib.asynccontextmanager
async def make_world(tmp: Path, *, database_url: str | None = None, **sim_settings: Any) -> AsyncIterator[World]:
    """A fake Discord with one server (admin, two members, #general) and a fast simulator.

    `database_url`: run the bot on this PostgreSQL database instead of an SQLite file in `tmp`.
    """
    async with FakeDiscord(bot_name="Sora Bot") as fake, Simulator() as sim:
        sim.state.configure({"pending_seconds": 0.05, "processing_seconds": 0.3, **sim_settings})
        world = World(fake=fake, sim=sim, tmp=tmp, database_url=database_url)
        world.guild = fake.add_guild("Test Server")
        world.channel = fake.add_channel(world.guild.id, "general")
        world.admin = fake.add_user("admin")
        fake.add_member(world.guild.id, world.admin.id, permissions=MANAGE_GUILD)
        world.member = fake.add_user("member")
        fake.add_member(world.guild.id, world.member.id)
        world.other = fake.add_user("other")
        fake.add_member(world.guild.id, world.other.id)
        yield world


class InProcessBot:
    """The real SoraBot in this event loop, so tests can read its database and runner directly."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.bot: SoraBot | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def db(self) -> Database:
        assert self.bot is not None
        return self.bot.db

    async def start(self) -> SoraBot:
        stack = contextlib.AsyncExitStack()
        stack.enter_context(patch_discord_py(self.world.fake))
        services = await stack.enter_async_context(open_services(self.world.settings()))
        # The bot judges interaction tokens by Discord's clock, so `fake.clock.advance()` ages them for both.
        self.bot = SoraBot(services, guild_ready_timeout=0.05, clock=self.world.fake.clock.now)
        self._stack = stack
        self._task = asyncio.create_task(self.bot.start(self.world.fake.token))
        await asyncio.wait_for(self.bot.wait_until_ready(), 20)
        await self.world.fake.sync_wait_commands(timeout=10)
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        task, stack = self._task, self._stack
        self.bot = self._task = self._stack = None
        try:
            if task is not None:
                await asyncio.wait_for(task, 10)  # whatever the bot's task raised fails the test
        finally:
            if stack is not None:
                await stack.aclose()

    async def wait_job(self, predicate: Callable[[Job], bool], timeout: float = 20.0) -> Job:
        """Wait until some job of the database satisfies `predicate` (re-checked as the fake sees traffic)."""
        async with asyncio.timeout(timeout):
            while True:
                rows = await self.db.fetchall("SELECT id FROM jobs ORDER BY seq")
                for row in rows:
                    job = await self.db.jobs.get(row["id"])
                    if job is not None and predicate(job):
                        return job
                await asyncio.sleep(0.02)

    async def wait_finished(self, count: int = 1, timeout: float = 30.0) -> list[Job]:
        async with asyncio.timeout(timeout):
            while True:
                rows = await self.db.fetchall("SELECT id FROM jobs WHERE state IN ('delivered','failed') ORDER BY seq")
                if len(rows) >= count:
                    return [j for r in rows if (j := await self.db.jobs.get(r["id"])) is not None]
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_bot(world: World) -> AsyncIterator[InProcessBot]:
    """The in-process bot for the length of a block, stopped cleanly whatever happens."""
    runner = InProcessBot(world)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


class SubprocessBot:
    """`python -m bot run` as a child process, for restarts and kill -9."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.proc: asyncio.subprocess.Process | None = None
        self.log = world.tmp / "bot.log"

    async def start(self) -> None:
        env = {**os.environ, **self.world.env(), "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=self.world.tmp, env=env,
                stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            )
        await self.world.fake.wait_for(lambda: self.world.fake.identify_count > self._identified, timeout=30,
                                       what="bot subprocess identified")
        self._identified = self.world.fake.identify_count

    _identified = 0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)

    async def wait_dead(self) -> None:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), 20)


async def admin_as(world: World, path: str, by: Any = None, **options: Any) -> Any:
    """`/sora-admin <path>` issued by `by` (default the world's admin); options may include `user`."""
    return await world.fake.slash(world.guild.id, world.channel.id, (by or world.admin).id, f"sora-admin {path}",
                                  options=options)


async def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 30.0) -> tuple[int, str, str]:
    """`python -m bot ARGS` as a child process with exactly `env` (plus PATH and PYTHONPATH); (code, out, err)."""
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(cwd), **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def private_reply(inter: Any, timeout: float = 10.0) -> Any:
    """The interaction's answer once it is final (not "thinking…"), checked to be ephemeral."""
    response = await inter.wait_response(3)
    assert response.data and response.data.get("flags", 0) & 64, f"not ephemeral: {response}"
    message = await inter.wait_original(lambda m: not m.loading, timeout=timeout)
    assert message.flags & 64, f"not ephemeral: {message.content!r}"
    return message


# ---- helpers for crash, fault and abuse tests ------------------------------------------------------------------


async def start_subprocess(world: World) -> SubprocessBot:
    """A new `python -m bot run` on the world's database, returned once *it* (not an earlier one) identified."""
    bot = SubprocessBot(world)
    bot._identified = world.fake.identify_count
    await bot.start()
    return bot


def read_db(world: World, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of a read-only query on the world's database, which another process may be writing."""
    import sqlite3

    if world.database_url is not None:
        return _read_postgres(world.database_url, sql, params)

    path = world.tmp / "bot.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:  # the schema is not there yet
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


async def wait_db(world: World, sql: str, params: tuple[Any, ...] = (), *, until: Callable[[list[Any]], bool] = bool,
                  timeout: float = 20.0, what: str = "") -> list[Any]:
    """Poll a query on the world's database every 20 ms until `until(rows)` holds; TimeoutError names `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = read_db(world, sql, params)
        if until(rows):
            return rows
        if loop.time() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what or sql}; last rows: {[dict(r) for r in rows][:5]}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def open_db(world: World) -> AsyncIterator[Database]:
    """The world's database through the storage layer (to prepare it before a bot starts, or audit it after)."""
    db = await Database.open(world.database)
    try:
        yield db
    finally:
        await db.close()


def _read_postgres(url: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """read_db on PostgreSQL: asyncpg is async only, so one short connection on a thread of its own."""
    import concurrent.futures

    import asyncpg

    from storage.conn import translate_placeholders

    async def query() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(translate_placeholders(sql), *params))
        except asyncpg.UndefinedTableError:  # the schema is not there yet
            return []
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, query()).result(timeout=30)


# Parametrise an end-to-end test with this to run it on SQLite and on PostgreSQL (tests/e2e/conftest.py).
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


def uploads(world: World) -> list[str]:
    """Route templates of the bot's successful file uploads (the video), in order."""
    return [r.route for r in world.fake.requests if r.method == "POST" and r.files and (r.status or 500) < 300]


def bot_messages(world: World) -> list[Any]:
    """Every message the bot made (any channel or DM, deleted ones too)."""
    bot_id = world.fake.bot_user.id
    return [m for messages in world.fake.messages.values() for m in messages if m.author_id == bot_id]


def assert_pings_only_requesters(world: World) -> None:
    """No version of any bot message (its creation or any edit) would notify a role, @everyone/@here, or more
    than one member, and that member asked the bot something in this test (Discord's own computation, done by
    the local Discord from content + allowed_mentions)."""
    askers = {inter.user_id for inter in world.fake.interactions.values()}
    for message in bot_messages(world):
        for version, pings in enumerate(message.pings):
            where = f"message {message.id} version {version}: {message.content[:120]!r}"
            assert not pings.roles and not pings.everyone, f"pings a role or everyone: {where}"
            assert len(pings.users) <= 1 and pings.users <= askers, f"pings {set(pings.users)}: {where}"


def video_posts(world: World, job_id: str) -> list[Any]:
    """Every message (any channel or DM, deleted ones too) carrying this job's video file."""
    name = f"sora-{job_id[:8]}.mp4"
    return [m for messages in world.fake.messages.values() for m in messages
            if any(a.filename == name for a in m.attachments)]


# ---- helpers for generation-flow tests (errors, images, delivery, queue) ---------------------------------------

RAW_TEXT = __import__("re").compile(r"[{}]|Traceback|\"error\"|_error\b|invalid_request|insufficient_credits|"
                                    r"rate_limit|spend_limit|HTTP \d{3}|Exception")


def assert_friendly(text: str | None) -> None:
    """A sentence for people: no raw JSON, error codes or traceback."""
    assert text, "no message"
    assert not RAW_TEXT.search(text), f"not friendly: {text!r}"


async def ledger_kinds(bot: InProcessBot, job_id: str) -> list[str]:
    rows = await bot.db.fetchall("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
    return [r["kind"] for r in rows]


async def assert_settled(bot: InProcessBot, world: World, job: Job, user: Any = None, *, start: int = 200) -> None:
    """Delivered jobs charged once, failed ones released once; the balance says the same; the ledger verifies."""
    user = user or world.member
    job = await bot.db.jobs.get(job.id) or job
    balance = await bot.db.ledger.balance(world.guild.id, user.id)
    if job.state == "delivered":
        assert await ledger_kinds(bot, job.id) == ["hold", "charge"]
        assert (balance.available, balance.held) == (start - job.cost, 0)
    else:
        assert job.state == "failed", job.state
        assert await ledger_kinds(bot, job.id) == ["hold", "release"]
        assert (balance.available, balance.held) == (start, 0)
    assert await bot.db.ledger.verify() == []


async def long_job(bot: InProcessBot, inter: Any) -> Job:
    """The job of an accepted command, once it renders (the simulator set to a long render: see `finish_render`)."""
    await accepted(inter)
    return await bot.wait_job(lambda j: j.state == "running")


async def finish_render(world: World, bot: InProcessBot, count: int = 1) -> Job:
    """Let the simulator's renders end now, and return the last of `count` finished jobs (ledger verified)."""
    world.sim.state.clock.advance(1000)
    finished = await bot.wait_finished(count)
    assert await bot.db.ledger.verify() == []
    return finished[-1]


async def accepted(inter: Any, timeout: float = 10.0) -> Any:
    """The requester's private "Got it" answer (asserted)."""
    response = await inter.wait_response(3)
    assert response.type == 5 and response.data["flags"] & 64
    answer = await inter.wait_original(lambda m: not m.loading, timeout=timeout)
    assert "held" in answer.content, answer.content
    return answer


def status_message(world: World, job: Job) -> Any:
    """The job's public status message (from the fake's records, with its edit history)."""
    assert job.status_message_id is not None
    return world.fake.message(job.status_message_id)


async def final_status(world: World, job: Job, word: str = "Done", timeout: float = 10.0) -> Any:
    """The job's status message once its final edit (settled just before it) has landed."""
    return await world.fake.wait_for(
        lambda: (m := world.fake.message(job.status_message_id or 0)) is not None and word in (m.content or "") and m,
        timeout=timeout, what=f"status message saying {word!r}")


# ---- several bot processes on one PostgreSQL database (scale-out tests) ----------------------------------------


class BotProcess:
    """One `python -m bot VERB` (`run` on some shards, or `worker`) of several sharing the world's PostgreSQL
    database, each with its own log (`NAME.log`, checked for ERROR lines like every child's) and /healthz."""

    def __init__(self, world: World, name: str, verb: str = "run", env: dict[str, str] | None = None) -> None:
        from tests.helpers import free_port

        self.world, self.name, self.verb = world, name, verb
        self.metrics_port = free_port()
        self.env = {"METRICS_PORT": str(self.metrics_port), "SORA_PROCESS_NAME": name, **(env or {})}
        self.log = world.tmp / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def owns(self, owner: str | None) -> bool:
        """Whether a job's `owner` column names this process (SORA_PROCESS_NAME, then `#` and a per-run tag)."""
        return owner is not None and owner.split("#")[0] == self.name

    async def start(self, timeout: float = 60.0) -> BotProcess:
        """Spawn it and return once its /healthz answers 200 (for `run`: every shard of it connected)."""
        env = {**os.environ, **self.world.env(), **self.env, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", self.verb, cwd=self.world.tmp, env=env,
                stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            )
        await self.wait_health(200, timeout)
        return self

    async def health(self) -> tuple[int, dict[str, Any]]:
        """(status, body) of its /healthz; (0, {}) while nothing listens."""
        import json

        import aiohttp

        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status, dict(json.loads(await resp.text()))
        except (aiohttp.ClientError, TimeoutError):
            return 0, {}

    async def wait_health(self, status: int, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /healthz every 50 ms until it answers `status`; fails at once if the process ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            got, body = await self.health()
            if got == status:
                return body
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name}: /healthz still {got} {body} after {timeout} s")
            await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    async def stop(self) -> int | None:
        """SIGTERM (after SIGCONT, in case it is paused) and wait; a process already gone is left as it is."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.resume()
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.kill9()
            return await self.proc.wait()


def shard_env(shard_id: int, count: int) -> dict[str, str]:
    return {"SHARD_COUNT": str(count), "SHARD_IDS": str(shard_id)}


@contextlib.asynccontextmanager
async def bot_processes(*procs: BotProcess) -> AsyncIterator[tuple[BotProcess, ...]]:
    """Start the processes one after another (the first applies the migrations alone) and stop them all
    after the block, whatever happened."""
    try:
        for proc in procs:
            await proc.start()
        yield procs
    finally:
        for proc in procs:
            await proc.stop()
