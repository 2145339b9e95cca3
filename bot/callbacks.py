"""The upstream's completion callbacks: a hint to re-read the task now, never trusted as the result itself.

Callbacks are unsigned, so a callback only wakes the job's follower, which then asks the upstream with
`GET /v1/tasks/{id}`. Only unguessable per-job paths are accepted, bodies are bounded, and an unknown
path gets the same 404 as any other, so nothing can be learnt by probing.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from bot.jobs.runner import JobRunner
from storage.db import Database

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
RUNNER_KEY = web.AppKey("runner", JobRunner)
DB_KEY = web.AppKey("db", Database)


async def _callback(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    db = request.app[DB_KEY]
    runner = request.app[RUNNER_KEY]
    try:
        raw = await request.read()  # bounded by client_max_size; the body is a hint, never the result
    except web.HTTPRequestEntityTooLarge:
        runner.metrics.callback("too_large")
        return web.json_response({"error": "body too large"}, status=413)
    job = await db.jobs.get_by_callback_token(token)
    if job is None:
        runner.metrics.callback("unknown")
        return web.json_response({"error": "not found"}, status=404)
    named = request.headers.get("X-Task-Id") or _task_id_in(raw)
    if named and job.task_id and named != job.task_id:
        log.warning("callback names another task; ignored", extra={"job": job.id})
        runner.metrics.callback("refused")
        return web.json_response({"error": "not found"}, status=404)
    # A job whose create answer was lost learns its task id here (confirmed with the upstream before use).
    woke = runner.poke(job.id, named if job.task_id is None else None)
    runner.metrics.callback("woke" if woke else "idle")
    log.info("callback received", extra={"job": job.id, "event": request.headers.get("X-Event", "?"), "woke": woke})
    return web.json_response({"ok": True})


def _task_id_in(raw: bytes) -> str | None:
    """The task id a callback body names, if it is a JSON object with a plausible `id`."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    task_id = body.get("id") if isinstance(body, dict) else None
    return task_id if isinstance(task_id, str) and 0 < len(task_id) <= 200 else None


def make_callback_app(db: Database, runner: JobRunner) -> web.Application:
    """The callback server's app; exposed for tests that run it in-process."""
    app = web.Application(client_max_size=MAX_BODY)
    app[DB_KEY] = db
    app[RUNNER_KEY] = runner
    app.router.add_post("/callbacks/{token}", _callback)
    return app


class CallbackServer:
    """Serve callbacks on host:port for the life of the bot."""

    def __init__(self, db: Database, runner: JobRunner, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_callback_app(db, runner), access_log=None)
        self.host, self.port = host, port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("callback server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        await self._runner.cleanup()
