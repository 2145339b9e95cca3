"""Prompt rules and safe display, fuzzed: nothing a member types can ping anyone or slip past the limits."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.prompts import PromptRejected, check_prompt, contains_banned, display_prompt, neutralise_mentions
from tests.helpers import LIVE_MENTION


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
    assert not LIVE_MENTION.search(shown)
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


# ---- invisible characters cannot hide a banned word (issue 10, item 8) --------------------------------------------

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u180e", "\u2061", "\u034f", "\U000e0041"]


@pytest.mark.parametrize("mark", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_an_invisible_character_inside_a_banned_word_does_not_hide_it(mark: str) -> None:
    with pytest.raises(PromptRejected, match="doesn't allow"):
        check_prompt(f"a zebra{mark}corn in a meadow", ["zebracorn"])


def test_compatibility_forms_and_case_do_not_hide_a_banned_word() -> None:
    for text in ("a ＺＥＢＲＡＣＯＲＮ", "a ZebraCorn", "the zebra\u00adcorn\u200d!", "ze\ufe0fbracorn"):
        with pytest.raises(PromptRejected):
            check_prompt(text, ["zebracorn"])
    assert check_prompt("a zebra and a unicorn", ["zebracorn"])  # different words stay allowed


def test_the_prompt_sent_upstream_is_the_members_text_minus_invisible_characters() -> None:
    assert check_prompt("  A Fox\u2060 in the \u00adsnow, ＦＵＬＬ width 😀\u200d  ") == "A Fox in the snow, ＦＵＬＬ width 😀"


@given(
    word=st.text(alphabet=st.characters(categories=("Ll", "Lu", "Nd")), min_size=2, max_size=12),
    marks=st.lists(st.tuples(st.integers(min_value=0, max_value=12), st.sampled_from(INVISIBLE)), max_size=6),
    before=st.sampled_from(["", "a ", "look: "]),
)
def test_invisible_characters_anywhere_in_a_banned_word_never_hide_it(word: str, marks: list[tuple[int, str]],
                                                                     before: str) -> None:
    hidden = word
    for position, mark in marks:
        at = min(position, len(hidden))
        hidden = hidden[:at] + mark + hidden[at:]
    if contains_banned(word, [word]):  # a word that matches itself (some letters casefold to several)
        assert contains_banned(before + hidden + " now", [word])


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300))
def test_what_is_sent_upstream_never_contains_a_format_character(text: str) -> None:
    try:
        cleaned = check_prompt(text)
    except PromptRejected:
        return
    assert not any(unicodedata.category(ch) == "Cf" for ch in cleaned)
