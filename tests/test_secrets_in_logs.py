"""No secret reaches the bot's log: the real `python -m bot run`, at DEBUG, through a delivered job with a
callback, a refused API key (401), forged callbacks and a restart, then its whole log file is searched."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.e2e.harness import make_world, read_db, start_subprocess, wait_db
from tests.helpers import free_port

API_KEY = "sk-test-key-123"


async def test_log_holds_no_token_key_or_callback_path(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        world.extra_env.update({"CALLBACK_PUBLIC_URL": base, "CALLBACK_HOST": "127.0.0.1",
                                "CALLBACK_PORT": str(port), "LOG_LEVEL": "DEBUG"})
        assert world.env()["SORA_API_KEY"] == API_KEY
        bot = await start_subprocess(world)

        # A full job, woken by the simulator's callback.
        inter = await world.generate(user=world.member)
        await inter.wait_original(lambda m: "held" in m.content, timeout=10)
        await wait_db(world, "SELECT * FROM jobs WHERE state = 'delivered'", what="the job delivered")
        assert any(c.status == 200 for c in world.sim.state.callbacks)

        # A forged and a replayed callback on the job's own path.
        [token] = [r["callback_token"] for r in read_db(world, "SELECT callback_token FROM jobs")]
        async with aiohttp.ClientSession() as session:
            for path in (f"/callbacks/{token}", "/callbacks/guess"):
                async with session.post(f"{base}{path}", json={"status": "completed"}) as response:
                    assert response.status in (200, 404)

        # The upstream refuses the key: the job fails and is refunded, the key is not echoed.
        world.sim.state.inject("invalid_api_key", where="create", count=10)
        inter = await world.generate(user=world.other)
        await inter.wait_original(lambda m: not m.loading, timeout=10)
        await wait_db(world, "SELECT * FROM jobs WHERE state = 'failed'", what="the job refused by the upstream")

        # A restart reads the tokens back from the database.
        await bot.terminate()
        bot = await start_subprocess(world)
        await bot.terminate()

        log = (tmp_path / "bot.log").read_text(encoding="utf-8", errors="replace")
        assert "delivered and charged" in log and "callback received" in log and "job failed" in log
        secrets = {
            "the Discord token": world.fake.token,
            "the video API key": API_KEY,
            **{f"interaction token {n}": i.token for n, i in enumerate(world.fake.interactions.values())},
            **{f"callback token {n}": r["callback_token"]
               for n, r in enumerate(read_db(world, "SELECT callback_token FROM jobs"))},
        }
        assert len(secrets) >= 2 + 2 + 2
        leaked = [name for name, value in secrets.items() if value and value in log]
        assert leaked == [], leaked
        # Nor a recognisable piece of them (a logger that cut a token short would still leak most of it).
        leaked = [name for name, value in secrets.items() if value and len(value) > 24 and value[:24] in log]
        assert leaked == [], leaked
