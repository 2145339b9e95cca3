"""Every message built in bot/discord_app/render.py fits Discord's 2,000 characters by construction, whatever the
prompt (escaping can double it) and however long the video's signed link, without cutting the link or the
requester's mention and without a live mention of anyone else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.discord_app import render as _render
from bot.jobs.notifier import StatusUpdate
from tests.helpers import LIVE_MENTION

USER = 123456789012345678
#: What makes a prompt grow when shown: markdown (escaped with a backslash) and mentions (broken with a
#: zero-width space), plus ordinary letters, spaces and the odd emoji.
NASTY = "*_`~|>#[]()-\\@<>&!:everyonhr0123456789 \n\ta😀\u200b"
prompts = st.text(alphabet=st.sampled_from(list(NASTY)), max_size=5000) | st.text(max_size=5000)


def signed_url(length: int) -> str:
    """The shape of a real presigned URL (a bucket path and a long signature query) of about `length`."""
    base = "https://files.example-cdn.com/outputs/2026/01/02/0f8e6c1d-9a7b-4c3e-8f1a-2b3c4d5e6f70.mp4?"
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260102%2Fus-east-1&X-Amz-Signature="
    return base + query + "a1b2c3d4" * max(0, (length - len(base) - len(query)) // 8 + 1)


def others_mentions(text: str) -> list[str]:
    return [m for m in LIVE_MENTION.findall(text) if m != f"<@{USER}>"]


@settings(max_examples=300, deadline=None)
@given(prompt=prompts, url_length=st.integers(min_value=40, max_value=1500),
       expires=st.none() | st.floats(min_value=1e9, max_value=4e9), balance=st.none() | st.integers(0, 10**12))
def test_link_fallback_fits_and_keeps_the_link_and_the_mention_whole(prompt: str, url_length: int,
                                                                     expires: float | None,
                                                                     balance: int | None) -> None:
    url = signed_url(url_length)
    text = _render.result_text(user_id=USER, prompt=prompt, duration=12, aspect_ratio="16:9", credits=300,
                               balance=balance, link=url, link_expires_at=expires)
    assert len(text) <= _render.MESSAGE_LIMIT
    assert url in text.split()  # whole, as its own word, so Discord links all of it
    assert text.startswith(f"<@{USER}> ")
    assert others_mentions(text) == []


@settings(max_examples=200, deadline=None)
@given(prompt=prompts, balance=st.none() | st.integers(0, 10**12))
def test_file_delivery_text_fits(prompt: str, balance: int | None) -> None:
    text = _render.result_text(user_id=USER, prompt=prompt, duration=4, aspect_ratio="9:16", credits=100,
                               balance=balance)
    assert len(text) <= _render.MESSAGE_LIMIT
    assert text.startswith(f"<@{USER}> ") and others_mentions(text) == []


@settings(max_examples=200, deadline=None)
@given(prompt=prompts, state=st.sampled_from(sorted(_render.STATE_LABELS)), note=st.none() | st.text(max_size=3000),
       progress=st.none() | st.floats(0, 100), position=st.none() | st.integers(1, 10**6),
       elapsed=st.floats(0, 10**7), final=st.booleans())
def test_status_text_fits(prompt: str, state: str, note: str | None, progress: float | None,
                          position: int | None, elapsed: float, final: bool) -> None:
    update = StatusUpdate(state=state, elapsed=elapsed, progress=progress, queue_position=position, note=note,
                          final=final)
    text = _render.status_text(user_id=USER, prompt=prompt, duration=8, aspect_ratio="16:9", credits=200,
                               update=update)
    assert len(text) <= _render.MESSAGE_LIMIT
    assert text.startswith(f"Video for <@{USER}>")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=5000))
def test_failure_text_fits(message: str) -> None:
    assert len(_render.failure_text(message)) <= _render.MESSAGE_LIMIT


def test_a_long_prompt_gets_what_the_link_leaves_and_is_marked_as_shortened() -> None:
    url = signed_url(1500)
    prompt = "**bold** @everyone <@1> " * 400
    text = _render.result_text(user_id=USER, prompt=prompt, duration=4, aspect_ratio="16:9", credits=100,
                               balance=50, link=url, link_expires_at=2e9)
    [quoted] = [line for line in text.splitlines() if line.startswith("> ")]
    assert quoted.endswith("…") and len(quoted) > 100  # shortened, but not thrown away
    assert len(text) > 1900  # the room was used


def test_a_link_too_long_for_any_message_is_left_out_rather_than_cut() -> None:
    url = signed_url(2100)
    text = _render.result_text(user_id=USER, prompt="a fox", duration=4, aspect_ratio="16:9", credits=100,
                               balance=50, link=url, link_expires_at=2e9)
    assert len(text) <= _render.MESSAGE_LIMIT and url[:60] not in text
    assert text.startswith(f"<@{USER}> ")


def test_fit_prompt_is_display_prompt_when_there_is_room() -> None:
    from bot.prompts import display_prompt

    assert _render.fit_prompt("a *cat*", 2000, 500) == display_prompt("a *cat*", 500)
    assert _render.fit_prompt("a *cat*", 0, 500) == ""
