"""`sora-bot check` (and the friendly edges of `run`/`sync`) as real processes against a real simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_discord import FakeDiscord

from bot.simulator import Simulator, SimulatorState
from tests.e2e.harness import run_cli
from tests.helpers import free_port

KEY = "sk-test-key-0123456789"
WRONG_TOKEN = "MTIzNDU2Nzg5.wrong.token-that-discord-does-not-know"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorState(pending_seconds=0.1, processing_seconds=0.5)) as simulator:
        yield simulator


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


def base_env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    """Everything `check` reads except Discord's part (see with_discord)."""
    return {"SORA_API_KEY": KEY, "SORA_API_BASE": sim.base_url, "DATABASE_PATH": str(tmp_path / "data" / "bot.db")}


def with_discord(sim: Simulator, tmp_path: Path, fake: FakeDiscord) -> dict[str, str]:
    return {**base_env(sim, tmp_path), **fake.env()}


def assert_no_traceback(out: str, err: str) -> None:
    assert "Traceback" not in out + err


async def test_check_prints_the_operators_balance(sim: Simulator, tmp_path: Path, discord: FakeDiscord) -> None:
    sim.state.balance = 54_321
    code, out, err = await run_cli("check", env=with_discord(sim, tmp_path, discord), cwd=tmp_path)
    assert code == 0, out + err
    assert "54321 credits" in out and "$271.61" in out
    assert "✓ database" in out and "✓ Discord accepted DISCORD_TOKEN" in out
    assert not [x for x in out.splitlines() if x.startswith("✗")]
    assert KEY not in out + err and discord.token not in out + err
    assert (tmp_path / "data" / "bot.db").exists()
    [credits] = sim.state.requests_to("/v1/credits", "GET")
    assert credits.authorized
    assert_no_traceback(out, err)


async def test_check_with_a_rejected_key_exits_1_with_a_friendly_line(sim: Simulator, tmp_path: Path,
                                                                      discord: FakeDiscord) -> None:
    sim.state.inject("invalid_api_key", "credits")  # the simulator refuses this key
    code, out, err = await run_cli("check", env=with_discord(sim, tmp_path, discord), cwd=tmp_path)
    assert code == 1
    [line] = [x for x in out.splitlines() if x.startswith("✗")]
    assert "API key was refused" in line and "SORA_API_KEY" in line and "invalid_api_key" in line
    assert "{" not in line  # no raw JSON
    assert KEY not in out + err
    assert_no_traceback(out, err)


async def test_check_with_an_unreachable_api_exits_1(tmp_path: Path) -> None:
    env = {"SORA_API_KEY": KEY, "SORA_API_BASE": "http://127.0.0.1:9", "DATABASE_PATH": str(tmp_path / "bot.db")}
    code, out, err = await run_cli("check", env=env, cwd=tmp_path, timeout=60)
    assert code == 1, out + err
    assert any(x.startswith("✗ video API at http://127.0.0.1:9") and "could not be reached" in x for x in out.splitlines()), out
    assert_no_traceback(out, err)


async def test_check_with_an_unusable_database_exits_1(sim: Simulator, tmp_path: Path, discord: FakeDiscord) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    env = {**with_discord(sim, tmp_path, discord), "DATABASE_PATH": str(blocker / "bot.db")}
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    assert any(x.startswith("✗ database") for x in out.splitlines()), out
    assert "operator balance" in out  # the other checks still ran
    assert_no_traceback(out, err)


async def test_check_without_a_discord_token_exits_1_naming_it(sim: Simulator, tmp_path: Path) -> None:
    """`run` cannot work without the token, so `check` must not say all is well (it exited 0 and only warned)."""
    code, out, err = await run_cli("check", env=base_env(sim, tmp_path), cwd=tmp_path)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("✗")]
    assert "DISCORD_TOKEN is not set" in line and "run" in line
    assert "operator balance" in out and "✓ database" in out  # the other checks still ran
    assert_no_traceback(out, err)


async def test_check_with_a_refused_discord_token_exits_1(sim: Simulator, tmp_path: Path,
                                                          discord: FakeDiscord) -> None:
    env = {**with_discord(sim, tmp_path, discord), "DISCORD_TOKEN": WRONG_TOKEN}
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("✗")]
    assert "Discord refused the token" in line and "DISCORD_TOKEN" in line
    assert WRONG_TOKEN not in out + err
    assert_no_traceback(out, err)


async def test_check_with_discord_unreachable_exits_1(sim: Simulator, tmp_path: Path, discord: FakeDiscord) -> None:
    env = {**with_discord(sim, tmp_path, discord), "DISCORD_API_BASE": f"http://127.0.0.1:{free_port()}/api/v10"}
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("✗")]
    assert "could not be reached" in line and "DISCORD_API_BASE" in line
    assert discord.token not in out + err
    assert_no_traceback(out, err)


async def test_check_without_an_api_key_is_a_configuration_error(tmp_path: Path) -> None:
    code, out, err = await run_cli("check", env={}, cwd=tmp_path)
    assert code == 2
    lines = [x for x in (out + err).splitlines() if x.strip()]
    assert len(lines) == 1 and "SORA_API_KEY" in lines[0], lines


@pytest.mark.parametrize("verb", ["sync", "run"])
async def test_an_unknown_token_exits_with_one_line(tmp_path: Path, sim: Simulator, verb: str) -> None:
    async with FakeDiscord() as fake:
        env = {**base_env(sim, tmp_path), **fake.env(), "DISCORD_TOKEN": WRONG_TOKEN}
        code, out, err = await run_cli(verb, env=env, cwd=tmp_path)
        assert code == 2
        lines = [x for x in (out + err).splitlines() if x.startswith("sora-bot")]
        assert len(lines) == 1, out + err
        assert "refused the token" in lines[0]
        assert WRONG_TOKEN not in out + err
        assert fake.sync_count == 0
    assert_no_traceback(out, err)
