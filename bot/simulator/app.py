"""A local stand-in for the video API (API.md), with switches to make it misbehave on purpose.

Every request is recorded (the key redacted), faults are taken in the order they were injected, tasks
advance on the state's scalable clock, and completion callbacks are POSTed with the provider's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from bot.simulator.state import ERRORS, CallbackAttempt, Fault, RecordedRequest, SimulatorState, error_body
from bot.simulator.validate import Rejected, check_create
from bot.simulator.video import padded_size, stream_padded

log = logging.getLogger(__name__)

STATE = web.AppKey("state", SimulatorState)
RELEASE = web.AppKey("release", asyncio.Event)
TICK = web.AppKey("tick", float)
FAULT = web.RequestKey("fault", Fault)
BODY = web.RequestKey("body", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _where(path: str) -> str | None:
    if path == "/v1/videos/generations":
        return "create"
    if path.startswith("/v1/tasks/"):
        return "poll"
    if path == "/v1/credits":
        return "credits"
    if path.startswith("/files/"):
        return "video"
    return None


def _error(code: str, message: str | None = None, retry_after: float | str | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(error_body(code, message), status=ERRORS[code][0], headers=headers)


def _bucket_error(status: int, code: str, message: str) -> web.Response:
    """Errors of the file host look like a cloud bucket's, not like the API's."""
    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, text=xml, content_type="application/xml")


async def _drop(request: web.Request) -> web.Response:
    """Cut the connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


async def _misbehave(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """Answer with the injected fault, or None when the handler itself must apply it."""
    if fault.kind == "hang":
        await request.app[RELEASE].wait()
        return await _drop(request)
    if fault.kind == "drop":
        return await _drop(request)
    if fault.kind == "slow":
        await asyncio.sleep(float(fault.retry_after or 1.0))
        return None
    if fault.kind == "malformed":
        return web.Response(status=200, text='{"id": "oops", "status": ', content_type="application/json")
    if fault.kind == "bad_gateway":
        return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type="text/html")
    if fault.kind in ERRORS:
        return _error(fault.kind, fault.message, fault.retry_after)
    return None


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, misbehave if told to, then check the key for API paths."""
    state = request.app[STATE]
    body: Any = None
    if request.can_read_body:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
    headers = {k: ("[redacted]" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
    state.requests.append(RecordedRequest(request.method, request.path, dict(request.query), headers, body, state.now()))
    where = _where(request.path)
    fault = state.take_fault(where) if where else None
    if fault is not None:
        request[FAULT] = fault
        answer = await _misbehave(request, fault)
        if answer is not None:
            return answer
    if request.path.startswith("/v1/"):
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk-") or len(auth) <= len("Bearer sk-"):
            return _error("invalid_api_key", "Invalid API key. Keys start with sk-.")
    request[BODY] = body
    return await handler(request)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        req = check_create(request[BODY])
    except Rejected as exc:
        return _error(exc.code, exc.message)
    if state.balance < req.duration * 25:
        return _error("insufficient_credits")
    task = state.create_task(prompt=req.prompt, duration=req.duration, aspect_ratio=req.aspect_ratio,
                             image_urls=req.image_urls, callback_url=req.callback_url, base_url=_origin(request))
    log.info("simulator: task %s created (%ss %s)", task.id, task.duration, task.aspect_ratio)
    fault = request.get(FAULT)
    if fault is not None and fault.kind == "lost_answer":  # the upstream did the work; the answer never arrives
        return await _drop(request)
    return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})


async def _task(request: web.Request) -> web.Response:
    state = request.app[STATE]
    task = state.tasks.get(request.match_info["task_id"])
    if task is None:
        return _error("task_not_found")
    body = state.task_json(state.refresh(task), _origin(request))
    fault = request.get(FAULT)
    if fault is not None and fault.kind == "unknown_status":
        body["status"] = "queued_for_review"
    return web.json_response(body)


async def _credits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = {"balance": state.balance, "total_purchased": state.total_purchased, "total_consumed": state.total_consumed}
    return web.json_response({"code": 200, "msg": "success", "data": data})


async def _file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    link = state.files.get(request.match_info["token"])
    if link is None:
        return _bucket_error(404, "NoSuchKey", "The specified key does not exist.")
    fault = request.get(FAULT)
    if fault is not None and fault.kind == "wrong_content_type":
        return web.Response(text="<html><body>Sign in to continue</body></html>", content_type="text/html")
    if (fault is not None and fault.kind == "expired") or state.now() > link.expires_at:
        return _bucket_error(403, "AccessDenied", "Request has expired")
    path = await state.videos.get(link.duration, link.aspect_ratio)
    total = padded_size(path.stat().st_size, state.video_bytes)
    response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(total)})
    await response.prepare(request)
    try:
        async for chunk in stream_padded(path, total):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the downloader went away (it gave up, or its disk failed): nothing to answer
        log.info("simulator: download of %s abandoned by the client", request.match_info["token"][:6])
    return response


async def _control(request: web.Request) -> web.Response:
    """POST {"reset"?, "set"?: {...}, "inject"?: fault or [faults], "advance"?: seconds}."""
    state = request.app[STATE]
    body = request[BODY]
    if not isinstance(body, dict):
        return web.json_response({"error": "send a JSON object"}, status=400)
    try:
        if body.get("reset"):
            state.faults.clear()
            state.requests.clear()
        state.configure(body.get("set") or {})
        faults = body.get("inject") or []
        for fault in [faults] if isinstance(faults, dict) else faults:
            state.inject(**fault)
        if body.get("advance"):
            state.clock.advance(float(body["advance"]))
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(state.summary())


async def _summary(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].summary())


async def _send_callback(state: SimulatorState, session: aiohttp.ClientSession, task_id: str) -> None:
    task = state.tasks[task_id]
    assert task.callback_url is not None
    event = f"task.{task.status}"
    headers = {"X-Event": event, "X-Task-Id": task.id, "X-Timestamp": str(int(state.now()))}
    status: int | None = None
    try:
        async with session.post(task.callback_url, json=state.task_json(task, task.base_url), headers=headers) as resp:
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("simulator: callback for %s failed: %s", task.id, exc)
    state.callbacks.append(CallbackAttempt(task.id, task.callback_url, event, status, state.now()))
    state.callback_result(task, status is not None and 200 <= status < 300)


async def _callback_loop(app: web.Application) -> AsyncIterator[None]:
    """Advance tasks in the background and deliver their callbacks (one attempt in flight per task)."""
    state, tick = app[STATE], app[TICK]
    in_flight: dict[str, asyncio.Task[None]] = {}

    async def loop(session: aiohttp.ClientSession) -> None:
        while True:
            state.refresh_all()
            for task in state.due_callbacks():
                if task.id not in in_flight:
                    task.callback_due = None
                    job = asyncio.create_task(_send_callback(state, session, task.id))
                    in_flight[task.id] = job

                    def forget(_done: asyncio.Task[None], tid: str = task.id) -> None:
                        in_flight.pop(tid, None)

                    job.add_done_callback(forget)
            await asyncio.sleep(tick)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        runner = asyncio.create_task(loop(session))
        yield
        app[RELEASE].set()
        for job in [runner, *in_flight.values()]:
            job.cancel()
        for job in [runner, *in_flight.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await job


def make_simulator_app(state: SimulatorState, *, tick: float = 0.02) -> web.Application:
    """Build the simulator's aiohttp application around `state`."""
    app = web.Application(middlewares=[_front_door], client_max_size=1024 * 1024)
    app[STATE] = state
    app[RELEASE] = asyncio.Event()
    app[TICK] = tick
    app.router.add_post("/v1/videos/generations", _create)
    app.router.add_get("/v1/tasks/{task_id}", _task)
    app.router.add_get("/v1/credits", _credits)
    app.router.add_get("/files/{token}/{name}", _file)
    app.router.add_post("/_sim/control", _control)
    app.router.add_get("/_sim/state", _summary)
    app.cleanup_ctx.append(_callback_loop)
    return app


class Simulator:
    """Run the simulator on a free loopback port for the life of an `async with` block."""

    def __init__(self, state: SimulatorState | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 tick: float = 0.02) -> None:
        self.state = state or SimulatorState()
        self.app = make_simulator_app(self.state, tick=tick)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        log.info("simulator listening on %s", self.base_url)

    async def close(self) -> None:
        if self._runner is not None:
            self.app[RELEASE].set()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def run_simulator(host: str = "127.0.0.1", port: int = 8000, state: SimulatorState | None = None, *,
                        ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or the task is cancelled); `ready` gets the base URL once listening."""
    async with Simulator(state, host=host, port=port) as sim:
        if ready is not None:
            ready(sim.base_url)
        await (stop or asyncio.Event()).wait()
