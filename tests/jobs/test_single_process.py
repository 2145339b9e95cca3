"""The SQLite guard with real processes: while one process drives an SQLite file's jobs, a second `sora-bot run`
on the same file refuses to start in one line naming DATABASE_URL; once the first is killed (-9), the file is
free again at once (the kernel drops the lock with the process)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import asyncio, sys
from pathlib import Path
from bot.jobs.claims import hold_database
from bot.config import ConfigError
from storage.db import Database

async def main() -> None:
    db = await Database.open(Path(sys.argv[1]))
    try:
        hold_database(db)
    except ConfigError as exc:
        print(f"refused: {exc}", flush=True)
        await db.close()
        return
    print("holding", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def _holder(path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)


async def _first_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()


async def test_a_second_process_on_one_sqlite_file_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    first = await _holder(db)
    try:
        assert await _first_line(first) == "holding"
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
               "DISCORD_TOKEN": "x" * 24 + ".yyyyyy.zzzzzzzzzzzzzzzzzzzzzzzzzzz", "SORA_API_KEY": "sk-test-123",
               "DATABASE_PATH": str(db), "VIDEO_DIR": str(tmp_path / "videos"),
               "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10",  # never reached: the guard comes first
               "LOG_LEVEL": "WARNING"}  # so what is left on stderr is what the operator must read
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        _out, err = await asyncio.wait_for(second.communicate(), 60)
        # discord.py's own start-up warnings (no voice libraries) are log records; what is not a record is ours
        lines = [line for line in err.decode().splitlines() if line.strip() and " discord.client: " not in line]
        assert second.returncode == 2, err.decode()
        assert len(lines) == 1 and lines[0].startswith("sora-bot: configuration error: DATABASE_PATH"), lines
        assert "in use by another sora-bot process" in lines[0] and "DATABASE_URL" in lines[0]
        assert f"pid {first.pid}" in lines[0]

        second_holder = await _holder(db)
        assert (await _first_line(second_holder)).startswith("refused: DATABASE_PATH")
        await second_holder.wait()

        first.send_signal(signal.SIGKILL)  # a killed process leaves no stale lock behind
        await first.wait()
        third = await _holder(db)
        try:
            assert await _first_line(third) == "holding"
        finally:
            third.kill()
            await third.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
