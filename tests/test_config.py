"""Configuration: one clear line naming the variable for every mistake, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123"
GOOD = {"DISCORD_TOKEN": TOKEN, "SORA_API_KEY": "sk-test-123456"}


def test_defaults_are_safe() -> None:
    s = load_settings(GOOD, dotenv=None)
    assert s.sora_api_base == "https://api.aivideoapi.ai"
    assert s.database_path == Path("data/sora-bot.db")
    assert s.callback_public_url is None
    assert s.dev_guild_id is None


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"DISCORD_TOKEN": ""}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "short"}, "DISCORD_TOKEN"),
        ({"SORA_API_KEY": ""}, "SORA_API_KEY"),
        ({"SORA_API_KEY": "pk-123456"}, "SORA_API_KEY"),
        ({"SORA_API_BASE": "ftp://x"}, "SORA_API_BASE"),
        ({"SORA_API_BASE": "not a url"}, "SORA_API_BASE"),
        ({"CALLBACK_PORT": "eighty"}, "CALLBACK_PORT"),
        ({"CALLBACK_PORT": "70000"}, "CALLBACK_PORT"),
        ({"DEV_GUILD_ID": "12x"}, "DEV_GUILD_ID"),
        ({"MAX_RUNNING_JOBS": "0"}, "MAX_RUNNING_JOBS"),
        ({"DOWNLOAD_TIMEOUT": "soon"}, "DOWNLOAD_TIMEOUT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DISCORD_GATEWAY_URL": "http://x"}, "DISCORD_GATEWAY_URL"),
    ],
)
def test_bad_values_name_the_variable(changes: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, **changes}, dotenv=None)
    assert info.value.name == name
    assert str(info.value).startswith(name)
    assert "\n" not in str(info.value)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\nSORA_API_KEY=sk-from-file\nCALLBACK_PORT=9001\n")
    s = load_settings({"SORA_API_KEY": "sk-from-env"}, dotenv=env_file)
    assert s.sora_api_key.get_secret_value() == "sk-from-env"
    assert s.callback_port == 9001


def test_secrets_are_redacted_in_repr() -> None:
    s = load_settings(GOOD, dotenv=None)
    text = repr(s) + str(s)
    assert TOKEN not in text and "sk-test-123456" not in text


def test_generate_needs_no_discord_token() -> None:
    s = load_settings({"SORA_API_KEY": "sk-abc123"}, dotenv=None, require_discord=False)
    assert s.discord_token is None
