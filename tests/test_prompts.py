"""Prompt rules and safe display, fuzzed: nothing a member types can ping anyone or slip past the limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.prompts import PromptRejected, check_prompt, display_prompt, neutralise_mentions

MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x01"])
def test_empty_prompts_are_refused(text: str) -> None:
    with pytest.raises(PromptRejected, match="empty"):
        check_prompt(text)


def test_length_limit_exactly() -> None:
    assert len(check_prompt("a" * 5000)) == 5000
    with pytest.raises(PromptRejected, match="5,001 characters"):
        check_prompt("a" * 5001)


def test_banned_words_are_not_named() -> None:
    with pytest.raises(PromptRejected) as info:
        check_prompt("A very Secret-Thing here", ["secret thing"])
    assert "secret" not in info.value.user_message.lower()
    assert check_prompt("secretive things", ["secret thing"])


@given(st.text(max_size=400))
def test_display_never_contains_a_live_mention(text: str) -> None:
    shown = display_prompt(text + " @everyone @here <@123> <@!4> <@&5>")
    assert not MENTION.search(shown)
    assert len(shown) <= 300 * 2 + 10  # escaping may double characters but the source is cut at 300


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=6000))
def test_check_prompt_is_total(text: str) -> None:
    try:
        cleaned = check_prompt(text)
    except PromptRejected as exc:
        assert exc.user_message
    else:
        assert 1 <= len(cleaned) <= 5000
        assert "\x00" not in cleaned and "\u202e" not in cleaned


def test_neutralise_keeps_text_readable() -> None:
    assert neutralise_mentions("hi @everyone").replace("\u200b", "") == "hi @everyone"
