"""A local stand-in for Sentry's ingest endpoint that records what Sentry would receive (envelopes, decoded)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class SentryStandIn:
    """Events received, in order; `dsn` points sentry-sdk here."""

    dsn: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


def _items(body: bytes) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Split an envelope (header line, then item header + payload lines) into (item header, payload)."""
    lines = body.split(b"\n")
    out = []
    i = 1
    while i + 1 < len(lines):
        header = json.loads(lines[i])
        payload = lines[i + 1]
        i += 2
        try:
            out.append((header, json.loads(payload)))
        except ValueError:
            out.append((header, None))
    return out


@asynccontextmanager
async def sentry_standin() -> AsyncIterator[SentryStandIn]:
    recorder = SentryStandIn()

    async def envelope(request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has already undone a Content-Encoding: gzip
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        recorder.raw.append(body)
        for header, payload in _items(body):
            if header.get("type") == "event" and payload is not None:
                recorder.events.append(payload)
        return web.json_response({"id": "0" * 32})

    app = web.Application()
    app.router.add_post("/api/{project}/envelope/", envelope)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.dsn = f"http://publickey@127.0.0.1:{port}/1"
    try:
        yield recorder
    finally:
        await runner.cleanup()
