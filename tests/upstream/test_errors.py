"""make_error maps every row of API.md's error table to one class, reading error.code before the status."""

from __future__ import annotations

import pytest

from bot.simulator.state import ERRORS, error_body
from bot.upstream import (
    InsufficientCredits,
    InternalError,
    InvalidAPIKey,
    InvalidRequest,
    IPNotAllowed,
    ModelNotFound,
    NotFound,
    RateLimited,
    SpendLimitExceeded,
    TaskNotFound,
    UpstreamError,
    make_error,
)
from bot.upstream.errors import DownloadError

# code -> (class, retryable, misconfigured)
TABLE = {
    "invalid_request": (InvalidRequest, False, False),
    "invalid_api_key": (InvalidAPIKey, False, True),
    "insufficient_credits": (InsufficientCredits, False, False),
    "ip_not_allowed": (IPNotAllowed, False, True),
    "model_not_found": (ModelNotFound, False, True),
    "task_not_found": (TaskNotFound, False, False),
    "rate_limit_exceeded": (RateLimited, True, False),
    "spend_limit_exceeded": (SpendLimitExceeded, False, False),
    "internal_error": (InternalError, True, False),
    "upstream_error": (UpstreamError, False, False),
}


def test_the_table_covers_every_documented_code() -> None:
    assert set(TABLE) == set(ERRORS)


@pytest.mark.parametrize("code", sorted(TABLE))
def test_each_documented_error(code: str) -> None:
    status = ERRORS[code][0]
    cls, retryable, misconfigured = TABLE[code]
    err = make_error(status, error_body(code), 7.0)
    assert type(err) is cls
    assert (err.status, err.code, err.retryable, err.misconfigured, err.retry_after) == (
        status, code, retryable, misconfigured, 7.0)
    assert err.message == ERRORS[code][2]
    assert err.user_message and "{" not in err.user_message and code not in err.user_message


@pytest.mark.parametrize(("status", "code", "cls"), [
    (404, "task_not_found", TaskNotFound),
    (404, "model_not_found", ModelNotFound),
    (429, "rate_limit_exceeded", RateLimited),
    (429, "spend_limit_exceeded", SpendLimitExceeded),
    (400, "rate_limit_exceeded", RateLimited),  # the code wins over an unexpected status
])
def test_code_before_status(status: int, code: str, cls: type) -> None:
    assert type(make_error(status, {"error": {"code": code, "message": "m"}}, None)) is cls


@pytest.mark.parametrize(("status", "body", "cls", "retryable", "message"), [
    (502, "<html>Bad Gateway</html>", InternalError, True, "<html>Bad Gateway</html>"),
    (503, None, InternalError, True, "http_503"),  # 503 without upstream_error is a transient gateway failure
    (504, {"message": "gateway timeout"}, InternalError, True, "gateway timeout"),
    (404, "Not Found", NotFound, False, "Not Found"),
    (429, {}, RateLimited, True, "http_429"),
    (401, {"code": 401, "msg": "bad key"}, InvalidAPIKey, False, "bad key"),
    (422, {"error": "weird"}, InvalidRequest, False, "weird"),
])
def test_fallback_by_status(status: int, body: object, cls: type, retryable: bool, message: str) -> None:
    """A body without a documented `error.code` falls back to the status: the code says so (`http_<status>`),
    whatever shape the body had, and any readable text in it is kept as the message."""
    err = make_error(status, body, None)
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.code == f"http_{status}"
    assert err.message == message


def test_other_shape_message_is_read() -> None:
    err = make_error(401, {"code": 401, "msg": "bad key"}, None)
    assert err.message == "bad key"


def test_invalid_request_explains_the_problem_without_markup() -> None:
    err = make_error(400, error_body("invalid_request", "'input.duration' must be one of 4, 8, 12. @everyone"), None)
    assert "'input.duration' must be one of 4, 8, 12." in err.user_message
    assert "@" not in err.user_message


def test_user_messages_per_product_table() -> None:
    assert "misconfigured" in make_error(401, error_body("invalid_api_key"), None).user_message
    assert "out of credits" in make_error(402, error_body("insufficient_credits"), None).user_message
    assert "queue" in make_error(429, error_body("rate_limit_exceeded"), None).user_message
    assert "spending limit" in make_error(429, error_body("spend_limit_exceeded"), None).user_message
    assert "try again" in make_error(500, error_body("internal_error"), None).user_message.lower()
    assert "prohibited content" in make_error(503, error_body("upstream_error"), None).user_message


def test_download_error_reasons() -> None:
    assert DownloadError("timeout").retryable
    assert not DownloadError("expired").retryable
    assert "expired" in DownloadError("expired").user_message
    with pytest.raises(ValueError, match="unknown"):
        DownloadError("cosmic_rays")


def test_str_never_contains_the_body_key() -> None:
    err = make_error(500, error_body("internal_error"), None)
    assert str(err) == "HTTP 500 internal_error: Unexpected server error"
