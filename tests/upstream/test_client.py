"""The client against the simulator over real loopback HTTP: every error row, retries and Retry-After."""

from __future__ import annotations

import aiohttp
import pytest

from bot.simulator import Simulator, SimulatorState
from bot.simulator.state import ERRORS
from bot.upstream import (
    BadResponse,
    CreateUnconfirmed,
    InternalError,
    NetworkError,
    RateLimited,
    RetryPolicy,
    Timeouts,
    UpstreamError,
    VideoAPIClient,
    VideoAPIError,
)
from tests.helpers import free_port
from tests.simulator_fixtures import KEY, FixedRng, RecordingSleep, finish
from tests.upstream.test_errors import TABLE

PROMPT = "A drone shot flying over mountains at sunset, cinematic lighting"


async def create(client: VideoAPIClient, **extra: object) -> str:
    return await client.create_task(prompt=PROMPT, duration=8, aspect_ratio="16:9", **extra)  # type: ignore[arg-type]


async def test_text_to_video_request_is_exactly_as_documented(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    task_id = await create(client)
    assert task_id in sim_state.tasks
    (req,) = sim_state.requests_to("/v1/videos/generations")
    assert req.method == "POST"
    assert req.json == {"model": "sora-2", "input": {"prompt": PROMPT, "duration": 8, "aspect_ratio": "16:9"}}
    assert req.headers["Authorization"] == "[redacted]"
    assert req.headers["Content-Type"].startswith("application/json")


async def test_image_to_video_with_callback(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    await client.create_task(prompt="Camera slowly pushes in", duration=4, aspect_ratio="9:16",
                             image_url="https://example.com/photo.jpg", callback_url="https://hooks.example/cb")
    (req,) = sim_state.requests_to("/v1/videos/generations")
    assert req.json == {
        "model": "sora-2",
        "callback_url": "https://hooks.example/cb",
        "input": {"prompt": "Camera slowly pushes in", "duration": 4, "aspect_ratio": "9:16",
                  "image_urls": ["https://example.com/photo.jpg"]},
    }


async def test_task_lifecycle(client: VideoAPIClient, sim_state: SimulatorState, simulator: Simulator) -> None:
    task_id = await create(client)
    assert (await client.get_task(task_id)).status == "pending"
    sim_state.clock.advance(16)
    running = await client.get_task(task_id)
    assert (running.status, running.progress, running.is_terminal) == ("processing", 50.0, False)
    await finish(sim_state, client, task_id)
    done = await client.get_task(task_id)
    assert done.is_terminal and done.status == "completed"
    assert done.video_urls[0].startswith(simulator.base_url + "/files/")
    assert done.completed_at is not None and done.created_at is not None


async def test_failed_task_and_null_progress(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    sim_state.configure({"fail_next": 1, "progress": "null"})
    task_id = await create(client)
    sim_state.clock.advance(5)
    assert (await client.get_task(task_id)).progress is None
    await finish(sim_state, client, task_id)
    task = await client.get_task(task_id)
    assert (task.status, task.error_code, task.error_message) == ("failed", "upstream_error", "Video generation failed")
    assert task.video_urls == ()


async def test_credits(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    credits = await client.get_credits()
    assert (credits.balance, credits.total_purchased, credits.total_consumed) == (1_000_000, 1_000_000, 0)
    await create(client)
    assert (await client.get_credits()).balance == 1_000_000 - 200


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_every_error_row_at_create(code: str, client: VideoAPIClient, sim_state: SimulatorState,
                                         sleep: RecordingSleep) -> None:
    cls, retryable, misconfigured = TABLE[code]
    sim_state.inject(code, "create", count=10)
    with pytest.raises(cls) as caught:
        await create(client)
    err = caught.value
    assert (err.status, err.code, err.retryable, err.misconfigured) == (ERRORS[code][0], code, retryable, misconfigured)
    # one request only: each create may bill the operator, so the runner owns the (counted) retries
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1
    assert sleep.delays == []


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_every_error_row_at_poll(code: str, client: VideoAPIClient, sim_state: SimulatorState) -> None:
    cls, retryable, _ = TABLE[code]
    task_id = await create(client)
    sim_state.inject(code, "poll", count=10)
    with pytest.raises(cls):
        await client.get_task(task_id)
    assert len(sim_state.requests_to("/v1/tasks/")) == (4 if retryable else 1)


async def test_unknown_task_is_task_not_found(client: VideoAPIClient) -> None:
    with pytest.raises(VideoAPIError) as caught:
        await client.get_task("00000000-0000-0000-0000-000000000000")
    assert caught.value.code == "task_not_found" and not caught.value.misconfigured


async def test_bad_key_is_refused(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key="pk-nope")
    with pytest.raises(VideoAPIError) as caught:
        await api.get_credits()
    assert (caught.value.status, caught.value.code, caught.value.misconfigured) == (401, "invalid_api_key", True)


async def test_rate_limit_retry_after_is_honoured(client: VideoAPIClient, sim_state: SimulatorState,
                                                  sleep: RecordingSleep) -> None:
    sim_state.inject("rate_limit_exceeded", "credits", count=2, retry_after=3)
    assert await client.get_credits()
    assert sleep.delays == [3.0, 3.0]


async def test_rate_limit_retry_after_as_http_date(client: VideoAPIClient, sim_state: SimulatorState,
                                                   sleep: RecordingSleep) -> None:
    sim_state.inject("rate_limit_exceeded", "credits", count=1, retry_after="Thu, 01 Jan 1970 00:00:00 GMT")
    await client.get_credits()
    assert sleep.delays == [0.0]  # a date in the past: at once


async def test_long_retry_after_goes_to_the_caller(client: VideoAPIClient, sim_state: SimulatorState,
                                                   sleep: RecordingSleep) -> None:
    sim_state.inject("rate_limit_exceeded", "credits", retry_after=900)
    with pytest.raises(RateLimited) as caught:
        await client.get_credits()
    assert caught.value.retry_after == 900 and sleep.delays == []


async def test_internal_errors_back_off_exponentially(client: VideoAPIClient, sim_state: SimulatorState,
                                                      sleep: RecordingSleep) -> None:
    sim_state.inject("internal_error", "credits", count=3)
    assert await client.get_credits()
    assert sleep.delays == [1.0, 2.0, 4.0]


async def test_bare_5xx_is_retryable_and_not_resent_by_the_client(client: VideoAPIClient, sim_state: SimulatorState,
                                                                  sleep: RecordingSleep) -> None:
    sim_state.inject("bad_gateway", "create", count=1)
    with pytest.raises(InternalError) as caught:
        await create(client)
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (502, "http_502", True)
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1 and sleep.delays == []
    sim_state.inject("bad_gateway", "credits", count=1)
    assert await client.get_credits()
    assert sleep.delays == [1.0]


async def test_upstream_error_at_create_is_not_retried(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    sim_state.inject("upstream_error", "create", count=5)
    with pytest.raises(UpstreamError):
        await create(client)
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1


async def test_timeout_after_sending_create_is_not_retried(session: aiohttp.ClientSession, simulator: Simulator,
                                                           sim_state: SimulatorState, sleep: RecordingSleep) -> None:
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, sleep=sleep,
                         retry=RetryPolicy(rng=FixedRng()), timeouts=Timeouts(create=0.3, poll=0.3))
    sim_state.inject("hang", "create")
    with pytest.raises(CreateUnconfirmed) as caught:
        await create(api)
    assert isinstance(caught.value.cause, NetworkError) and caught.value.cause.code == "timeout"
    assert caught.value.cause.sent and not caught.value.retryable
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1 and sleep.delays == []


async def test_dropped_connection_at_create_is_ambiguous(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    sim_state.inject("drop", "create")
    with pytest.raises(CreateUnconfirmed) as caught:
        await create(client)
    assert isinstance(caught.value.cause, NetworkError) and caught.value.cause.sent
    assert not caught.value.retryable
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1


async def test_a_late_create_answer_within_the_timeout_is_used(session: aiohttp.ClientSession,
                                                                simulator: Simulator,
                                                                sim_state: SimulatorState) -> None:
    """A slow upstream that answers before the (generous) create timeout gives a task we can follow."""
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, timeouts=Timeouts(create=5.0))
    sim_state.inject("slow", "create", retry_after=0.5)  # answers properly, 0.5 s late
    task_id = await create(api)
    assert task_id in sim_state.tasks and len(sim_state.requests_to("/v1/videos/generations")) == 1


async def test_dropped_and_hung_polls_are_retried(session: aiohttp.ClientSession, simulator: Simulator,
                                                  sim_state: SimulatorState, sleep: RecordingSleep) -> None:
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, sleep=sleep,
                         retry=RetryPolicy(rng=FixedRng(), base_delay=1.0), timeouts=Timeouts(poll=0.3))
    task_id = await create(api)
    sim_state.inject("drop", "poll")
    sim_state.inject("hang", "poll")
    assert (await api.get_task(task_id)).id == task_id
    # aiohttp itself re-sends an idempotent GET once when a kept-alive connection is dropped
    assert len(sim_state.requests_to("/v1/tasks/")) == 3
    assert sleep.delays == [1.0]


async def test_connection_refused_is_retried_at_create(session: aiohttp.ClientSession, policy: RetryPolicy) -> None:
    sleep = RecordingSleep()
    api = VideoAPIClient(session, base_url=f"http://127.0.0.1:{free_port()}", api_key=KEY, retry=policy, sleep=sleep)
    with pytest.raises(NetworkError) as caught:
        await create(api)
    assert not caught.value.sent and caught.value.code == "network_error" and caught.value.retryable
    assert sleep.delays == []  # never reached the upstream: the caller may send it again


async def test_malformed_json_is_retried_for_polls(client: VideoAPIClient, sim_state: SimulatorState,
                                                   sleep: RecordingSleep) -> None:
    task_id = await create(client)
    sim_state.inject("malformed", "poll", count=2)
    assert (await client.get_task(task_id)).id == task_id
    assert sleep.delays == [1.0, 2.0]
    sim_state.inject("malformed", "poll", count=4)
    with pytest.raises(BadResponse):
        await client.get_task(task_id)


async def test_malformed_create_answer_is_not_retried(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    sim_state.inject("malformed", "create")
    with pytest.raises(CreateUnconfirmed) as caught:
        await create(client)
    assert isinstance(caught.value.cause, BadResponse) and not caught.value.retryable
    assert len(sim_state.requests_to("/v1/videos/generations")) == 1


async def test_unknown_status_is_kept(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    task_id = await create(client)
    sim_state.inject("unknown_status", "poll")
    task = await client.get_task(task_id)
    assert task.status == "queued_for_review" and not task.is_terminal


async def test_the_key_is_never_recorded_or_repr(client: VideoAPIClient, sim_state: SimulatorState) -> None:
    await create(client)
    await client.get_credits()
    assert KEY not in repr(sim_state.requests) and KEY not in repr(client)


async def test_session_with_authorization_is_refused(simulator: Simulator) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-x"}) as s:
        with pytest.raises(ValueError, match="Authorization"):
            VideoAPIClient(s, base_url=simulator.base_url, api_key=KEY)
