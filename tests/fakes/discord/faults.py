"""Test-injected faults: rate limits and scripted failures for matching REST calls."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class RateLimitRule:
    """The next ``count`` calls whose path starts with ``prefix`` get a 429 asking to wait ``retry_after``."""

    prefix: str
    count: int
    retry_after: float
    method: str | None = None
    is_global: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and path.startswith(self.prefix) and (self.method in (None, method))


@dataclass
class FailRule:
    """The next ``times`` calls matching method and path regex fail with ``status`` and Discord ``code``."""

    method: str | None
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (None, method) and bool(self.pattern.search(path))


def normalise_prefix(prefix: str) -> str:
    """Accept "/channels/1/messages" as well as "/api/v10/channels/1/messages"."""
    if prefix.startswith("/api/v10"):
        prefix = prefix[len("/api/v10") :]
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix
