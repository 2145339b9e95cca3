"""The simulator against every JSON example of API.md: shapes, fields, validation, credits and callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.simulator import Simulator, SimulatorState
from tests.simulator_fixtures import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = {"model": "sora-2", "input": {"prompt": "A drone shot", "duration": 8, "aspect_ratio": "16:9"}}


async def call(session: aiohttp.ClientSession, sim: Simulator, method: str, path: str,
               body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with session.request(method, sim.base_url + path, json=body, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json(content_type=None)


async def create(session: aiohttp.ClientSession, sim: Simulator, body: Any = TEXT) -> str:
    status, data = await call(session, sim, "POST", "/v1/videos/generations", body)
    assert status == 200, data
    return data["data"]["taskId"]


async def test_create_response(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    status, data = await call(session, simulator, "POST", "/v1/videos/generations", TEXT)
    assert status == 200
    assert set(data) == {"code", "msg", "data"} and (data["code"], data["msg"]) == (200, "success")
    assert set(data["data"]) == {"taskId"} and len(data["data"]["taskId"]) == 36


async def test_task_shapes_through_its_life(session: aiohttp.ClientSession, simulator: Simulator,
                                            sim_state: SimulatorState) -> None:
    task_id = await create(session, simulator)
    _, pending = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert set(pending) == {"id", "status", "model", "created_at"} and pending["status"] == "pending"
    sim_state.clock.advance(2)
    sim_state.progress = "null"
    _, processing = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert processing == {"id": task_id, "status": "processing", "model": "sora-2",
                          "created_at": pending["created_at"], "progress": None}
    sim_state.progress = "number"
    _, processing = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert isinstance(processing["progress"], int)
    sim_state.clock.advance(60)
    _, done = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert set(done) == {"id", "status", "model", "created_at", "completed_at", "output"}
    assert done["status"] == "completed" and done["completed_at"] >= done["created_at"]
    assert set(done["output"]) == {"urls", "metadata"}
    assert done["output"]["metadata"] == {"duration": 8, "prompt": "A drone shot"}
    (url,) = done["output"]["urls"]
    assert url.startswith(simulator.base_url + "/files/") and "expires=" in url


async def test_failed_shape_and_refund(session: aiohttp.ClientSession, simulator: Simulator,
                                       sim_state: SimulatorState) -> None:
    sim_state.fail_next = 1
    task_id = await create(session, simulator)
    _, credits = await call(session, simulator, "GET", "/v1/credits")
    assert credits["data"]["balance"] == 1_000_000 - 200
    sim_state.clock.advance(60)
    _, failed = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert set(failed) == {"id", "status", "model", "created_at", "error"}
    assert failed["error"] == {"code": "upstream_error", "message": "Video generation failed"}
    _, credits = await call(session, simulator, "GET", "/v1/credits")
    assert credits == {"code": 200, "msg": "success",
                       "data": {"balance": 1_000_000, "total_purchased": 1_000_000, "total_consumed": 0}}


@pytest.mark.parametrize("duration", [4, 8, 12])
async def test_credits_charged_per_second(duration: int, session: aiohttp.ClientSession, simulator: Simulator,
                                          sim_state: SimulatorState) -> None:
    await create(session, simulator, {**TEXT, "input": {**TEXT["input"], "duration": duration}})
    assert sim_state.balance == 1_000_000 - 25 * duration


async def test_insufficient_credits(session: aiohttp.ClientSession, simulator: Simulator,
                                    sim_state: SimulatorState) -> None:
    sim_state.balance = 199
    status, data = await call(session, simulator, "POST", "/v1/videos/generations", TEXT)
    assert status == 402
    assert data == {"error": {"code": "insufficient_credits", "message": "Your credit balance is too low. Please top up.",
                              "type": "billing_error"}}
    assert sim_state.tasks == {}


def with_input(**changes: Any) -> dict[str, Any]:
    data = dict(TEXT["input"])
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return {"model": "sora-2", "input": data}


@pytest.mark.parametrize(("body", "message"), [
    ({"input": TEXT["input"]}, "'model' is required."),
    ({"model": "sora-2"}, "'input' is required."),
    ([], "Request body must be a JSON object."),
    (with_input(prompt=...), "'input.prompt' is required."),
    (with_input(prompt=""), "'input.prompt' must be a non-empty string."),
    (with_input(prompt="x" * 5001), "'input.prompt' must be at most 5000 characters."),
    (with_input(duration=5), "'input.duration' must be one of 4, 8, 12."),
    (with_input(duration="8"), "'input.duration' must be one of 4, 8, 12."),
    (with_input(duration=8.0), "'input.duration' must be one of 4, 8, 12."),
    (with_input(duration=...), "'input.duration' is required."),
    (with_input(aspect_ratio="1:1"), "'input.aspect_ratio' must be one of 16:9, 9:16."),
    (with_input(image_urls=["https://a/1.jpg", "https://a/2.jpg"]), "Only 1 image is allowed in 'input.image_urls'."),
    (with_input(image_urls=["file:///etc/passwd"]), "'input.image_urls' must contain http(s) URLs."),
    ({**TEXT, "callback_url": "ftp://x"}, "'callback_url' must be an http(s) URL."),
])
async def test_invalid_requests(body: Any, message: str, session: aiohttp.ClientSession, simulator: Simulator,
                                sim_state: SimulatorState) -> None:
    status, data = await call(session, simulator, "POST", "/v1/videos/generations", body)
    assert status == 400
    assert data == {"error": {"code": "invalid_request", "message": message, "type": "invalid_request_error"}}
    assert sim_state.balance == 1_000_000


async def test_max_prompt_is_accepted(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    assert await create(session, simulator, with_input(prompt="x" * 5000))


async def test_unknown_model(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    status, data = await call(session, simulator, "POST", "/v1/videos/generations", {**TEXT, "model": "sora-1"})
    assert (status, data["error"]["code"], data["error"]["type"]) == (404, "model_not_found", "invalid_request_error")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pk-1"}, {"Authorization": "sk-abc"},
                                     {"Authorization": "Bearer sk-"}])
async def test_keys_must_start_with_sk(headers: dict[str, str], session: aiohttp.ClientSession,
                                       simulator: Simulator) -> None:
    status, data = await call(session, simulator, "GET", "/v1/credits", headers=headers)
    assert status == 401
    assert data["error"]["code"] == "invalid_api_key" and data["error"]["type"] == "authentication_error"


async def test_unknown_task(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    status, data = await call(session, simulator, "GET", "/v1/tasks/nope")
    assert status == 404
    assert data == {"error": {"code": "task_not_found", "message": "Task ID does not exist",
                              "type": "invalid_request_error"}}


async def test_injected_error_with_retry_after(session: aiohttp.ClientSession, simulator: Simulator,
                                               sim_state: SimulatorState) -> None:
    sim_state.inject("rate_limit_exceeded", "credits", retry_after=7)
    async with session.get(simulator.base_url + "/v1/credits", headers=AUTH) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, "7")
    status, _ = await call(session, simulator, "GET", "/v1/credits")
    assert status == 200


async def test_control_endpoint(session: aiohttp.ClientSession, simulator: Simulator,
                                sim_state: SimulatorState) -> None:
    body = {"set": {"processing_seconds": 5, "fail_next": 2, "video_bytes": 1000},
            "inject": [{"kind": "internal_error", "where": "create", "count": 3}], "advance": 10}
    status, summary = await call(session, simulator, "POST", "/_sim/control", body, headers={})
    assert status == 200 and summary["faults"][0]["kind"] == "internal_error"
    assert (sim_state.processing_seconds, sim_state.fail_next, sim_state.video_bytes) == (5, 2, 1000)
    status, data = await call(session, simulator, "POST", "/_sim/control", {"set": {"nope": 1}}, headers={})
    assert status == 400 and "nope" in data["error"]
    status, _ = await call(session, simulator, "POST", "/_sim/control", {"inject": {"kind": "boom"}}, headers={})
    assert status == 400


@pytest.fixture
async def flaky_hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A receiver that fails its first two callbacks."""
    seen: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "body": await request.json()})
        return web.Response(status=500 if len(seen) <= 2 else 200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", seen
    await runner.cleanup()


async def test_callbacks_are_retried_at_once_then_later(session: aiohttp.ClientSession, simulator: Simulator,
                                                        sim_state: SimulatorState,
                                                        flaky_hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = flaky_hook
    sim_state.callback_retry_delays = (0.0, 180.0, 600.0)
    task_id = await create(session, simulator, {**TEXT, "callback_url": url})
    sim_state.clock.advance(60)
    async with asyncio.timeout(5):
        while len(sim_state.callbacks) < 2:
            await asyncio.sleep(0.01)
    assert [c.status for c in sim_state.callbacks] == [500, 500]  # the first try, then at once
    sim_state.clock.advance(179)
    await asyncio.sleep(0.1)
    assert len(sim_state.callbacks) == 2  # the next one waits about 3 minutes
    sim_state.clock.advance(2)
    async with asyncio.timeout(5):
        while len(sim_state.callbacks) < 3:
            await asyncio.sleep(0.01)
    assert sim_state.callbacks[-1].status == 200
    first = seen[0]
    assert first["headers"]["X-Event"] == "task.completed" and first["headers"]["X-Task-Id"] == task_id
    assert first["headers"]["X-Timestamp"].isdigit()
    _, polled = await call(session, simulator, "GET", f"/v1/tasks/{task_id}")
    assert first["body"] == polled
    sim_state.clock.advance(3600)
    await asyncio.sleep(0.1)
    assert len(sim_state.callbacks) == 3


async def test_failed_callback_event(session: aiohttp.ClientSession, simulator: Simulator, sim_state: SimulatorState,
                                     flaky_hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = flaky_hook
    sim_state.fail_next = 1
    await create(session, simulator, {**TEXT, "callback_url": url})
    sim_state.clock.advance(60)
    async with asyncio.timeout(5):
        while not seen:
            await asyncio.sleep(0.01)
    assert seen[0]["headers"]["X-Event"] == "task.failed"
    assert seen[0]["body"]["error"] == {"code": "upstream_error", "message": "Video generation failed"}
