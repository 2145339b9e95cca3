"""The upstream video API: client, errors, models, retry policy and poll schedule."""

from __future__ import annotations

from bot.upstream.client import Timeouts, VideoAPIClient
from bot.upstream.errors import (
    BadResponse,
    CreateUnconfirmed,
    DownloadError,
    InsufficientCredits,
    InternalError,
    InvalidAPIKey,
    InvalidRequest,
    IPNotAllowed,
    ModelNotFound,
    NetworkError,
    NotFound,
    RateLimited,
    SpendLimitExceeded,
    TaskNotFound,
    TaskTimedOut,
    UpstreamError,
    VideoAPIError,
    make_error,
)
from bot.upstream.models import Credits, Task
from bot.upstream.retry import PollSchedule, RetryPolicy, parse_retry_after, wait_for_task

__all__ = [
    "BadResponse",
    "CreateUnconfirmed",
    "Credits",
    "DownloadError",
    "IPNotAllowed",
    "InsufficientCredits",
    "InternalError",
    "InvalidAPIKey",
    "InvalidRequest",
    "ModelNotFound",
    "NetworkError",
    "NotFound",
    "PollSchedule",
    "RateLimited",
    "RetryPolicy",
    "SpendLimitExceeded",
    "Task",
    "TaskNotFound",
    "TaskTimedOut",
    "Timeouts",
    "UpstreamError",
    "VideoAPIClient",
    "VideoAPIError",
    "make_error",
    "parse_retry_after",
    "wait_for_task",
]
