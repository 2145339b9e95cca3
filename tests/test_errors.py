"""One user-facing error type, one home for each sentence: what members, admins and the operator read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from discord import app_commands

import bot.jobs.health
import bot.upstream.errors as upstream_errors
from bot.discord_app.render import refusal_text
from bot.discord_app.tree import INTERNAL_ERROR, friendly_message
from bot.images import ImageNotFromDiscord, ImageRejected, ImageUnavailable
from bot.jobs.health import UpstreamHealth
from bot.prompts import PromptRejected
from bot.upstream.errors import MISCONFIGURED, make_error
from cogs.sora._flow import Refusal
from storage import errors as storage_errors
from storage.errors import (
    AmountOutOfRange,
    Blocked,
    ChannelNotAllowed,
    Cooldown,
    DailyBudgetExhausted,
    NotEnoughCredits,
    QuotaRefused,
    TooManyJobs,
    UserFacingError,
)

REFUSALS: list[UserFacingError] = [
    PromptRejected("Your prompt is empty."), ImageRejected("That image is animated."),
    ImageUnavailable("gone"), ImageNotFromDiscord("not Discord's"), Refusal("Duration must be 4, 8 or 12 seconds."),
    QuotaRefused(), Blocked("spam"), ChannelNotAllowed([500, 600]), TooManyJobs(2), Cooldown(5),
    DailyBudgetExhausted(100, 90, 100, datetime(2025, 1, 1, tzinfo=UTC)), NotEnoughCredits(0, 100),
    AmountOutOfRange("An amount must be a whole number."),
]


@pytest.mark.parametrize("error", REFUSALS, ids=lambda e: type(e).__name__)
def test_every_refusal_is_one_user_facing_error_shown_by_the_one_error_path(error: UserFacingError) -> None:
    assert isinstance(error, UserFacingError) and error.user_message
    assert friendly_message(error) == refusal_text(error)
    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.original = error
    assert friendly_message(wrapped) == refusal_text(error)


def test_a_bug_is_not_a_user_facing_error() -> None:
    assert friendly_message(RuntimeError("boom")) is None
    assert "Nothing was charged" in INTERNAL_ERROR


def test_storage_words_a_channel_refusal_plainly_and_the_discord_side_names_the_channels() -> None:
    """Moved from tests/storage/test_jobs.py: the mention of the allowed channel is the front end's."""
    refusal = ChannelNotAllowed([500])
    assert "<#" not in refusal.user_message
    assert "<#500>" in refusal_text(refusal)


def test_no_two_error_classes_share_a_name() -> None:
    """storage's member-credit refusal is NotEnoughCredits; InsufficientCredits is the upstream's 402."""
    def names(module: object) -> set[str]:
        return {n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Exception)
                and v.__module__ == module.__name__}  # type: ignore[attr-defined]

    assert not names(storage_errors) & names(upstream_errors)
    assert not hasattr(storage_errors, "InsufficientCredits")


def test_one_misconfigured_sentence_for_a_failed_job_and_for_paused_intake() -> None:
    error = make_error(401, {"error": {"code": "invalid_api_key", "message": "bad key"}}, None)
    assert error.user_message == MISCONFIGURED
    health = UpstreamHealth()
    health.record(error)
    assert not health.accepting and health.refusal == MISCONFIGURED
    assert not hasattr(bot.jobs.health, "MISCONFIGURED")


def test_out_of_credits_pauses_intake_with_the_errors_own_sentence() -> None:
    error = make_error(402, {"error": {"code": "insufficient_credits", "message": "top up"}}, None)
    health = UpstreamHealth()
    health.record(error)
    assert health.refusal == error.user_message and "out of credits" in error.user_message
    health.record_balance(10_000)
    assert health.accepting and health.refusal is None


@pytest.mark.parametrize(("status", "code", "hint"), [
    (401, "invalid_api_key", "check SORA_API_KEY"),
    (403, "ip_not_allowed", "allowlist"),
    (404, "model_not_found", "not available to this API key"),
    (402, "insufficient_credits", "top up"),
    (429, "spend_limit_exceeded", "spending limit"),
    (429, "rate_limit_exceeded", "rate limiting"),
])
def test_operator_hints_live_on_the_error_classes(status: int, code: str, hint: str) -> None:
    error = make_error(status, {"error": {"code": code, "message": "x"}}, None)
    assert hint in error.operator_hint
    assert error.operator_hint != error.user_message  # members read other words


def test_an_error_without_a_hint_tells_the_operator_what_members_read() -> None:
    error = make_error(500, {"error": {"code": "internal_error", "message": "x"}}, None)
    assert error.operator_hint == error.user_message
