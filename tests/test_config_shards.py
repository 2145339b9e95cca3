"""SHARD_COUNT and SHARD_IDS: which gateway shards a process connects, checked before anything connects."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Settings, load_settings

BASE = {"DISCORD_TOKEN": "x" * 30, "SORA_API_KEY": "sk-test-key"}


def settings(**env: str) -> Settings:
    return load_settings({**BASE, **env}, dotenv=None)


def test_without_them_the_process_connects_every_shard_discord_recommends() -> None:
    s = settings()
    assert s.shard_count is None and s.shard_ids is None


def test_count_and_ids() -> None:
    s = settings(SHARD_COUNT="4", SHARD_IDS="0, 2")
    assert s.shard_count == 4 and s.shard_ids == (0, 2)
    alone = settings(SHARD_COUNT="2")
    assert alone.shard_count == 2 and alone.shard_ids is None


@pytest.mark.parametrize(("env", "name", "words"), [
    ({"SHARD_COUNT": "0"}, "SHARD_COUNT", "between 1 and"),
    ({"SHARD_COUNT": "two"}, "SHARD_COUNT", "whole number"),
    ({"SHARD_IDS": "0"}, "SHARD_IDS", "needs SHARD_COUNT"),
    ({"SHARD_COUNT": "2", "SHARD_IDS": "2"}, "SHARD_IDS", "between 0 and 1"),
    ({"SHARD_COUNT": "2", "SHARD_IDS": "-1"}, "SHARD_IDS", "between 0 and 1"),
    ({"SHARD_COUNT": "3", "SHARD_IDS": "1,1"}, "SHARD_IDS", "different shard numbers"),
    ({"SHARD_COUNT": "3", "SHARD_IDS": "0,,1"}, "SHARD_IDS", "different shard numbers"),
])
def test_mistakes_are_one_line_naming_the_variable(env: dict[str, str], name: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(**env)
    assert raised.value.name == name and words in str(raised.value)
