"""Every failure of the video API as one exception hierarchy, built by one factory from the error table.

`make_error` reads `error.code` before the HTTP status, because 404 and 429 each carry two codes with
different meanings (a lost task is not a wrong model; a rate limit passes, a spend limit does not).
"""

from __future__ import annotations

import re
from typing import ClassVar

TRY_LATER = "The video service had trouble just now. Please try again in a few minutes."
#: The one sentence members read while the operator's access is refused (a failed job, or intake paused).
MISCONFIGURED = "The bot is misconfigured right now, so it can't make videos. The admins have been told."


class VideoAPIError(Exception):
    """Base of every failure the client raises; carries what the runner, a member and the operator each need.

    `user_message` is for members; `operator_hint` is for whoever can fix it (`sora-bot check`,
    `/sora-admin status`), and falls back to the member's sentence where the operator can do nothing.
    """

    default_code: ClassVar[str] = "api_error"
    default_retryable: ClassVar[bool] = False
    default_misconfigured: ClassVar[bool] = False
    friendly: ClassVar[str] = TRY_LATER
    hint: ClassVar[str | None] = None

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code or self.default_code
        self.message = message or self.code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.misconfigured = self.default_misconfigured
        super().__init__(self.message)

    @property
    def user_message(self) -> str:
        """The plain sentence a member reads; never the upstream's raw text (except for 400s, cleaned)."""
        return self.friendly

    @property
    def operator_hint(self) -> str:
        """What the operator (or a server admin reading /sora-admin status) should do about it."""
        return self.hint or self.user_message

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, retryable={self.retryable!r})"


class InvalidRequest(VideoAPIError):
    """400: the request itself was wrong; retrying the same request cannot help."""

    default_code = "invalid_request"

    @property
    def user_message(self) -> str:
        detail = _clean(self.message)
        if detail and detail != self.code:
            return f"The video service rejected the request: {detail} Change it and try again."
        return "The video service rejected the request as invalid. Check the prompt, duration and image."


class InvalidAPIKey(VideoAPIError):
    """401: the operator's key is wrong, disabled or deleted."""

    default_code = "invalid_api_key"
    default_misconfigured = True
    friendly = MISCONFIGURED
    hint = "the API key was refused (invalid, disabled or deleted): check SORA_API_KEY"


class InsufficientCredits(VideoAPIError):
    """402: the operator's balance is too low until they top up."""

    default_code = "insufficient_credits"
    friendly = "The video service is out of credits for now. The admins have been told; please try again later."
    hint = "the operator's balance is too low: top up with the video API provider"


class IPNotAllowed(VideoAPIError):
    """403: the key's IP allowlist does not include this host."""

    default_code = "ip_not_allowed"
    default_misconfigured = True
    friendly = MISCONFIGURED
    hint = "this machine's IP address is not in the API key's allowlist"


class ModelNotFound(VideoAPIError):
    """404 model_not_found: the model name or the base URL is wrong."""

    default_code = "model_not_found"
    default_misconfigured = True
    friendly = MISCONFIGURED
    hint = "the video model is not available to this API key"


class NotFound(VideoAPIError):
    """404 without a known code: most likely a wrong base URL, so the operator must look."""

    default_code = "not_found"
    default_misconfigured = True
    friendly = MISCONFIGURED


class TaskNotFound(VideoAPIError):
    """404 task_not_found: the upstream does not know this task id."""

    default_code = "task_not_found"
    friendly = "The video service lost track of this job."


class RateLimited(VideoAPIError):
    """429 rate_limit_exceeded: too many requests; waiting (Retry-After) fixes it."""

    default_code = "rate_limit_exceeded"
    default_retryable = True
    friendly = "The video service is busy right now; your job is waiting in the queue."
    hint = "the video API is rate limiting this key; try again in a minute"


class SpendLimitExceeded(VideoAPIError):
    """429 spend_limit_exceeded: the key's spending cap; only the operator can lift it."""

    default_code = "spend_limit_exceeded"
    friendly = "The bot's spending limit with the video service has been reached. Please try again later."
    hint = "the API key's spending limit was reached"


class InternalError(VideoAPIError):
    """500 internal_error, or any 5xx without a known code: transient on the upstream's side."""

    default_code = "internal_error"
    default_retryable = True


class UpstreamError(VideoAPIError):
    """503 upstream_error: the AI provider refused or failed (often prohibited content)."""

    default_code = "upstream_error"
    friendly = (
        "The video provider refused or failed to make this video. Prompts with prohibited content are a "
        "common cause; try rewording it."
    )


class NetworkError(VideoAPIError):
    """No usable HTTP answer: refused connection, reset, or timeout (`code` "timeout").

    `sent` is False only when the request provably never reached the upstream (could not connect).
    """

    default_code = "network_error"
    default_retryable = True
    hint = "the video API could not be reached: check SORA_API_BASE and the network"

    def __init__(self, message: str = "", *, code: str | None = None, sent: bool = True,
                 retryable: bool | None = None) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.sent = sent


class BadResponse(VideoAPIError):
    """A 2xx answer we cannot read (malformed JSON, missing fields)."""

    default_code = "bad_response"
    default_retryable = True


class CreateUnconfirmed(VideoAPIError):
    """A create whose answer never came (timeout, reset after sending, unreadable 2xx): a billed task may exist.

    The API has no idempotency key, so sending it again could pay for a second task; the caller must find the
    task another way (its callback) or give up and refund.
    """

    default_code = "create_unconfirmed"
    friendly = "The video service didn't confirm your job, so I stopped rather than risk paying twice. Please try again."

    def __init__(self, cause: VideoAPIError) -> None:
        super().__init__(cause.message, status=cause.status, code=self.default_code)
        self.cause = cause


class TaskTimedOut(VideoAPIError):
    """The task stayed unfinished past JOB_TIMEOUT: it is given up (and the member refunded)."""

    default_code = "job_timeout"
    friendly = "The video provider didn't finish this job in time."


DOWNLOAD_REASONS = ("expired", "too_large", "timeout", "bad_content_type", "network", "bad_url", "disk")
_DOWNLOAD_MESSAGES = {
    "expired": "The finished video's link expired before it could be fetched.",
    "too_large": "The finished video is too large to fetch.",
    "bad_content_type": "The video service sent something that isn't a video.",
    "bad_url": "The video service gave an unusable link for the video.",
    "disk": "There was no room to save the video on the bot's side.",
}


class DownloadError(VideoAPIError):
    """Fetching a finished video failed; `reason` is one of DOWNLOAD_REASONS."""

    default_code = "download_failed"

    def __init__(self, reason: str, message: str = "", *, status: int | None = None) -> None:
        if reason not in DOWNLOAD_REASONS:
            raise ValueError(f"unknown download failure reason {reason!r}")
        super().__init__(message or reason, status=status, code=f"download_{reason}",
                         retryable=reason in ("network", "timeout"))
        self.reason = reason

    @property
    def user_message(self) -> str:
        return _DOWNLOAD_MESSAGES.get(self.reason, TRY_LATER)


_BY_CODE: dict[str, type[VideoAPIError]] = {
    "invalid_request": InvalidRequest,
    "invalid_api_key": InvalidAPIKey,
    "insufficient_credits": InsufficientCredits,
    "ip_not_allowed": IPNotAllowed,
    "model_not_found": ModelNotFound,
    "task_not_found": TaskNotFound,
    "rate_limit_exceeded": RateLimited,
    "spend_limit_exceeded": SpendLimitExceeded,
    "internal_error": InternalError,
    "upstream_error": UpstreamError,
}

_BY_STATUS: dict[int, type[VideoAPIError]] = {
    400: InvalidRequest,
    401: InvalidAPIKey,
    402: InsufficientCredits,
    403: IPNotAllowed,
    404: NotFound,
    429: RateLimited,
}


def _fields(body: object) -> tuple[str | None, str]:
    """Pull (code, message) from the documented shape, or the provider's other {"code","msg"} shape."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
        elif isinstance(err, str):
            code, message = body.get("code"), err
        else:
            code, message = body.get("code"), body.get("message", body.get("msg"))
        return (code if isinstance(code, str) and code else None), (str(message) if message is not None else "")
    if isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return None, text.strip()[:300]
    return None, ""


def make_error(status: int, body: object, retry_after: float | None) -> VideoAPIError:
    """Build the one right exception for an HTTP error answer, by `error.code` first, then by status.

    Args:
        status: the HTTP status.
        body: the decoded JSON body, or its text when it was not JSON.
        retry_after: seconds from the Retry-After header, if any.
    """
    code, message = _fields(body)
    cls = _BY_CODE.get(code or "")
    if cls is None:
        cls = InternalError if status >= 500 else _BY_STATUS.get(status, InvalidRequest)
        code = code or f"http_{status}"
    return cls(message, status=status, code=code, retry_after=retry_after)


_MARKUP = re.compile(r"[<>@`*_~|\\]")


def _clean(text: str) -> str:
    """Make an upstream 400 message safe to show: short, one line, no markup or mentions."""
    text = " ".join(_MARKUP.sub("", text).split())
    if not text:
        return ""
    if len(text) > 200:
        text = text[:197].rstrip() + "…"
    return text if text.endswith((".", "!", "?", "…")) else text + "."
