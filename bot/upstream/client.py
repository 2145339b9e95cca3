"""The video API client: three JSON calls and a streamed download, over one injected aiohttp session.

The create call has no idempotency key, so it is retried only when the answer proves the task was not
accepted; reads are retried on every transient failure. The API key goes only to the API's own base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from bot.upstream.errors import (
    BadResponse,
    CreateUnconfirmed,
    DownloadError,
    NetworkError,
    VideoAPIError,
    make_error,
)
from bot.upstream.models import Credits, Task, parse_credits, parse_task, parse_task_id
from bot.upstream.retry import RetryPolicy, Sleep, parse_retry_after

log = logging.getLogger(__name__)

MODEL = "sora-2"
CHUNK = 64 * 1024
VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream", "application/mp4")
EXPIRED_STATUSES = (401, 403, 404, 410)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Explicit time bounds per kind of call, in seconds."""

    connect: float = 10.0
    create: float = 120.0  # generous: a late answer is a task we can use, a missing one is a task we can't find
    poll: float = 20.0
    credits: float = 20.0
    download_read: float = 60.0  # the longest silence tolerated inside a download

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """The same bound for every call (UPSTREAM_TIMEOUT); downloads keep a silence of at least 5 s."""
        return cls(connect=seconds, create=seconds, poll=seconds, credits=seconds,
                   download_read=max(seconds, 5.0))


Observer = Callable[[str, float, str | None], None]  # (endpoint, seconds, error code or None)


def _endpoint(path: str) -> str:
    """A bounded name for a request path (metrics must not carry task ids)."""
    if path.startswith("/v1/tasks/"):
        return "task"
    return {"/v1/videos/generations": "create", "/v1/credits": "credits"}.get(path, "other")


def _outcome_unknown(exc: VideoAPIError) -> bool:
    """A create failure after which a task may still exist: no answer after sending, or a 2xx we can't read."""
    return isinstance(exc, BadResponse) or (isinstance(exc, NetworkError) and exc.sent)


class VideoAPIClient:
    """Talk to the upstream video API (see API.md); one instance per process."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeouts: Timeouts | None = None,
        observer: Observer | None = None,
    ) -> None:
        if any(name.lower() == "authorization" for name in session.headers):
            raise ValueError("the shared session must not carry an Authorization header (downloads would leak it)")
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.timeouts = timeouts or Timeouts()
        self._observe = observer

    def __repr__(self) -> str:
        return f"VideoAPIClient(base_url={self._base!r})"

    # ---- the three API calls ---------------------------------------------------------------------

    async def create_task(
        self,
        *,
        prompt: str,
        duration: int,
        aspect_ratio: str,
        image_url: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Send one create request (never retried here) and return the new task's id.

        The caller owns the retry budget, because each create may bill the operator: the job runner counts its
        creates in the database so the bound holds across restarts.

        Raises:
            CreateUnconfirmed: the request was sent but no readable answer came back; a task may exist.
            VideoAPIError: any other refusal; `retryable` says whether sending again is safe (429, 5xx, and
                network failures that never reached the upstream prove no task was made).
        """
        payload: dict[str, Any] = {"prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio}
        if image_url:
            payload["image_urls"] = [image_url]
        body: dict[str, Any] = {"model": MODEL, "input": payload}
        if callback_url:
            body["callback_url"] = callback_url
        try:
            data = await self._request("POST", "/v1/videos/generations", self.timeouts.create, body)
            task_id = parse_task_id(data)
        except VideoAPIError as exc:
            if _outcome_unknown(exc):
                raise CreateUnconfirmed(exc) from exc
            raise
        log.info("task created: %s", task_id)
        return task_id

    async def get_task(self, task_id: str) -> Task:
        """Read a task's status (retrying transient failures a bounded number of times)."""
        data = await self._with_retries("GET", f"/v1/tasks/{quote(task_id, safe='')}", self.timeouts.poll)
        return parse_task(data, task_id)

    async def get_credits(self) -> Credits:
        """Read the operator's balance."""
        return parse_credits(await self._with_retries("GET", "/v1/credits", self.timeouts.credits))

    # ---- plumbing --------------------------------------------------------------------------------

    async def _with_retries(self, method: str, path: str, timeout: float) -> object:
        """Reads only: a GET can be repeated safely, so transient failures are retried a few times here."""
        failures = 0
        while True:
            try:
                return await self._request(method, path, timeout, None)
            except VideoAPIError as exc:
                failures += 1
                delay = self.retry.delay(failures, exc.retry_after) if exc.retryable else None
                if delay is None:
                    raise
                log.warning("%s %s failed (%s); retry %s in %.2fs", method, path, exc.code, failures, delay)
                await self._sleep(delay)

    async def _request(self, method: str, path: str, timeout: float, body: object) -> object:
        started = time.perf_counter()
        try:
            data = await self._send(method, path, timeout, body)
        except VideoAPIError as exc:
            self._observed(_endpoint(path), started, exc.code)
            raise
        self._observed(_endpoint(path), started, None)
        return data

    def _observed(self, endpoint: str, started: float, error_code: str | None) -> None:
        if self._observe is not None:
            self._observe(endpoint, time.perf_counter() - started, error_code)

    async def _send(self, method: str, path: str, timeout: float, body: object) -> object:
        client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, self.timeouts.connect))
        try:
            async with self._session.request(
                method, self._base + path, json=body, headers=self._auth, timeout=client_timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            raise NetworkError(f"cannot connect: {exc.strerror or exc}", sent=False) from None
        except TimeoutError:
            raise NetworkError(f"no answer within {timeout:g}s", code="timeout") from None
        except aiohttp.ClientError as exc:
            raise NetworkError(f"{type(exc).__name__}: {exc}") from None
        try:
            data: object = json.loads(raw) if raw else None
        except ValueError:
            data = None
            if status < 400:
                raise BadResponse(f"HTTP {status} with a body that is not JSON", status=status) from None
        if status >= 400:
            raise make_error(status, data if data is not None else raw.decode("utf-8", "replace"), retry_after)
        if status >= 300 or data is None:
            raise BadResponse(f"unexpected HTTP {status}", status=status)
        return data

    # ---- download --------------------------------------------------------------------------------

    async def download(self, url: str, dest: Path, *, max_bytes: int, timeout: float) -> int:
        """Stream a finished video to `dest` (via a temporary file, then renamed); return its size.

        No credential is sent: the URL is presigned and may live on any host.

        Raises:
            DownloadError: with `reason` in expired, too_large, timeout, bad_content_type, network,
                bad_url, disk.
        """
        started = time.perf_counter()
        try:
            size = await self._download(url, Path(dest), max_bytes=max_bytes, timeout=timeout)
        except DownloadError as exc:
            self._observed("download", started, exc.code)
            raise
        self._observed("download", started, None)
        return size

    async def _download(self, url: str, dest: Path, *, max_bytes: int, timeout: float) -> int:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadError("bad_url", "only http(s) URLs can be downloaded")
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
        client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(timeout, self.timeouts.connect), sock_read=min(timeout, self.timeouts.download_read)
        )
        try:
            async with asyncio.timeout(timeout):
                size = await self._stream(url, tmp, max_bytes, client_timeout)
            os.replace(tmp, dest)
        except TimeoutError:
            raise DownloadError("timeout", f"download took longer than {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise DownloadError("network", f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise DownloadError("disk", f"cannot write {dest}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        log.info("downloaded %s bytes to %s", size, dest)
        return size

    async def _stream(self, url: str, tmp: Path, max_bytes: int, timeout: aiohttp.ClientTimeout) -> int:
        async with self._session.get(url, timeout=timeout, allow_redirects=True, max_redirects=5) as resp:
            if resp.status in EXPIRED_STATUSES:
                raise DownloadError("expired", f"HTTP {resp.status} from the video host", status=resp.status)
            if resp.status >= 400:
                raise DownloadError("network", f"HTTP {resp.status} from the video host", status=resp.status)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith(VIDEO_TYPES):
                raise DownloadError("bad_content_type", f"the video host sent {ctype}", status=resp.status)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise DownloadError("too_large", f"{resp.content_length} bytes is over {max_bytes}")
            total = 0
            with tmp.open("wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise DownloadError("too_large", f"more than {max_bytes} bytes")
                    out.write(chunk)
        if total == 0:
            raise DownloadError("network", "the video host sent an empty file")
        return total
