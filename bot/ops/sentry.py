"""Unexpected errors to Sentry, with the job id as a tag and every secret scrubbed by the logs' own filter.

Only errors nobody expected are sent: sentry-sdk's logging integration turns `log.exception(...)` and ERROR
records (the command tree's error path, a crashed job, the callback server) into events; warnings stay logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from bot.logs import scrub

TAGGED = ("job", "guild", "task", "shard")


def _scrubbed(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, secrets) for v in value]
    return value


def make_before_send(secrets: Iterable[str]) -> Any:
    """The hook that tags and scrubs each event before it leaves the process."""
    known = tuple(s for s in secrets if s)

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        extra = event.get("extra") or {}
        tags = event.setdefault("tags", {})
        for name in TAGGED:
            if name in extra and extra[name] is not None:
                tags[name] = str(extra[name])
        cleaned: dict[str, Any] = _scrubbed(event, known)
        return cleaned

    return before_send


def init_sentry(dsn: str, *, secrets: Iterable[str], process: str, environment: str = "production") -> None:
    """Start reporting; called once by the entry point when SENTRY_DSN is set."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        server_name=process,
        include_local_variables=False,  # locals may hold tokens; the scrubber only knows what it's told
        max_breadcrumbs=50,
        before_send=make_before_send(secrets),
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
    )
