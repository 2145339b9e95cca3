"""HTTP plumbing of the fake REST API: recording, auth, injected faults, rate-limit headers, errors.

Every call under ``/api/v10`` is recorded in ``fake.requests`` (also the ones that fail or hit no
route) so a test can see what the bot tried; the ones Discord counts as invalid (401, 403, 429) are
also kept in ``fake.world.invalid_requests`` (see :func:`invalid_requests`). Handlers return ``(status, body)`` and raise
:class:`DiscordError`; this module turns both into responses whose JSON Content-Type is exactly
``application/json`` (discord.py treats anything else as text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors
from .errors import DiscordError
from .models import Part, RequestRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger("fake_discord.rest")

API_PREFIX = "/api/v10"
#: Per-request storage keys (typed keys where aiohttp has them, to avoid its NotAppKeyWarning).
RECORD: Any = web.RequestKey("record", RequestRecord) if hasattr(web, "RequestKey") else "record"
BODY_ERROR: Any = web.RequestKey("body_error", str) if hasattr(web, "RequestKey") else "body_error"
Handler = Callable[[web.Request], Awaitable[tuple[int, Any]]]

#: Routes called without the bot token (interaction webhooks and callbacks authenticate by token).
NO_AUTH_PREFIXES = ("/webhooks/", "/interactions/", "/gateway")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


def route_template(request: web.Request) -> str:
    """The matched route's template without the API prefix, or the raw path when nothing matched."""
    info = request.match_info
    if info.http_exception is None and info.route.resource is not None:
        canonical = info.route.resource.canonical
        return canonical[len(API_PREFIX) :] if canonical.startswith(API_PREFIX) else canonical
    return request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX) else request.path


async def read_record(request: web.Request) -> RequestRecord:
    """Parse the body once (JSON or multipart with payload_json) into a :class:`RequestRecord`."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    path = request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX) else request.path
    record = RequestRecord(
        method=request.method,
        route=route_template(request),
        path=path,
        query=dict(request.query),
        headers=headers,
        time=time.time(),
    )
    ctype = request.content_type
    try:
        if ctype == "multipart/form-data":
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                data = await part.read(decode=False)  # type: ignore[union-attr]
                name = part.name or ""  # type: ignore[union-attr]
                filename = part.filename  # type: ignore[union-attr]
                p_ctype = part.headers.get("Content-Type")  # type: ignore[union-attr]
                record.parts.append(Part(name=name, filename=filename, content_type=p_ctype, data=bytes(data)))
                if name == "payload_json":
                    record.json = json.loads(bytes(data).decode())
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                record.json = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("fake discord: unreadable body for %s %s: %s", request.method, request.path, exc)
        record.json = None
        request[BODY_ERROR] = str(exc)
    return record


def ratelimit_headers(bucket: str, remaining: int = 4, reset_after: float = 1.0) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def bucket_hash(route: str) -> str:
    return hashlib.sha1(route.encode()).hexdigest()[:16]


def counts_as_invalid(status: int, headers: dict[str, str] | None = None) -> bool:
    """Discord's invalid-request rule: every 401, 403 and 429 counts toward 10,000 per 10 minutes (then the
    IP is banned for every bot on it), except a 429 whose ``X-RateLimit-Scope`` is ``shared``."""
    if status in (401, 403):
        return True
    return status == 429 and (headers or {}).get("X-RateLimit-Scope") != "shared"


def invalid_requests(fake: FakeDiscord, path_regex: str | None = None, *, within: float | None = None,
                     method: str | None = None) -> list[RequestRecord]:
    """The refused requests Discord would count, optionally only on matching paths or in the last ``within`` s."""
    pattern = re.compile(path_regex) if path_regex else None
    since = time.time() - within if within is not None else None
    return [r for r in fake.world.invalid_requests
            if (pattern is None or pattern.search(r.path)) and (method is None or r.method == method)
            and (since is None or r.time >= since)]


def _count(fake: FakeDiscord, record: RequestRecord, status: int, headers: dict[str, str] | None = None) -> None:
    if counts_as_invalid(status, headers):
        fake.world.invalid_requests.append(record)


def make_middleware(fake: FakeDiscord) -> Any:
    """The middleware that records, authenticates, injects faults and renders errors."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        record = await read_record(request)
        request[RECORD] = record
        fake.requests.append(record)
        bucket = bucket_hash(f"{record.method} {record.route}")
        headers = ratelimit_headers(bucket)
        try:
            response = await _handle(fake, request, record, handler, bucket)
        except DiscordError as exc:
            record.status, record.response, record.error_code = exc.status, exc.body(), exc.code
            _count(fake, record, exc.status, exc.headers if isinstance(exc, _RateLimited) else None)
            if exc.status >= 500 or (exc.code == 0 and exc.status == 404):
                log.info("fake discord: %s %s -> %s %s", record.method, record.path, exc.status, exc.message)
            fake.notify()
            if isinstance(exc, _RateLimited):
                headers = exc.headers
            return json_response(exc.status, exc.body(), headers)
        except Exception:  # a bug in the fake must not look like a hang to the bot
            log.exception("fake discord: handler crashed for %s %s", record.method, record.path)
            record.status = 500
            record.response = {"message": "500: Internal Server Error (fake)", "code": 0}
            fake.notify()
            return json_response(500, record.response, headers)
        status, body, extra = response
        record.status, record.response = status, body
        _count(fake, record, status, extra)
        headers.update(extra)
        fake.notify()
        if body is None:
            return web.Response(status=status, headers=headers)
        return json_response(status, body, headers)

    return middleware


async def _handle(
    fake: FakeDiscord, request: web.Request, record: RequestRecord, handler: Any, bucket: str
) -> tuple[int, Any, dict[str, str]]:
    exc = request.match_info.http_exception
    if exc is not None:
        if exc.status == 405:
            raise DiscordError(405, 0, "405: Method Not Allowed")
        log.warning("fake discord: no route for %s %s", record.method, record.path)
        raise errors.not_found()
    if not record.path.startswith(NO_AUTH_PREFIXES):
        auth = request.headers.get("Authorization")
        if auth != f"Bot {fake.token}":
            raise errors.unauthorized()
    if BODY_ERROR in request:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.")
    for fail in fake.fail_rules:
        if fail.matches(record.method, record.path):
            fail.times -= 1
            fail.hits += 1
            if fail.status == 200:  # a "success" whose body is not what Discord sends: the client must cope
                return 200, {"garbled": fail.message}, {}
            raise DiscordError(fail.status, fail.code, fail.message)
    for rule in fake.rate_limits:
        if rule.matches(record.method, record.path):
            rule.count -= 1
            rule.hits += 1
            body = {"message": "You are being rate limited.", "retry_after": rule.retry_after, "global": rule.is_global}
            headers = ratelimit_headers(bucket, remaining=0, reset_after=rule.retry_after)
            headers.update(
                {
                    "Retry-After": str(math.ceil(rule.retry_after)),
                    "X-RateLimit-Scope": "global" if rule.is_global else "user",
                    "Via": "1.1 google",
                }
            )
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
            raise _RateLimited(body, headers)
    status, body = await handler(request)
    return status, body, {}


class _RateLimited(DiscordError):
    """A 429 carries its own headers (Via, X-RateLimit-*), so it bypasses the generic error path."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(429, 0, body["message"])
        self._body = body
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return self._body
