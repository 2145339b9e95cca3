"""Helpers every kind of test shares (one copy each): free loopback ports and what a live mention looks like."""

from __future__ import annotations

import re
import socket

#: Anything Discord renders as a mention: @everyone/@here, users (<@id>, <@!id>), roles (<@&id>), channels (<#id>)
#: and slash-command mentions (</name sub:id>).
LIVE_MENTION = re.compile(r"@everyone|@here|<@[!&]?\d+>|<#\d+>|</[\w -]+:\d+>")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_upstream(*, poll_retries: int = 3, timeout: float = 1.0) -> dict[str, str]:
    """Settings (given before the bot starts) that make fault tests take seconds: every video API call bounded by
    `timeout`, and `poll_retries` failed status reads in a row before a job is refunded."""
    return {"UPSTREAM_TIMEOUT": str(timeout), "STATUS_READ_FAILURES": str(poll_retries)}
