"""What an operator graphs: one registry per process, labelled by process, never by user text or growing ids.

Counters move where the event happens (a hold, a settlement, a delivery, an upstream call); gauges of the
database's jobs are read at scrape time, so they are right whichever process changed a job.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("queued", "submitting", "running", "completed", "delivered", "failed")
DELIVERY_PATHS = ("interaction", "channel", "dm", "link")
CREDIT_KINDS = ("held", "charged", "released")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_CODE_LENGTH = 40  # error codes come from a fixed table; anything longer is not one of ours


def process_name() -> str:
    """A short, stable name for this process in every metric (SORA_PROCESS_NAME, else host:pid)."""
    return os.environ.get("SORA_PROCESS_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def _code(code: str | None) -> str:
    if not code:
        return "none"
    return code if len(code) <= MAX_CODE_LENGTH and code.replace("_", "").isalnum() else "other"


class Metrics:
    """The bot's metrics, in a registry of its own (tests and several bots in one process don't collide)."""

    def __init__(self, process: str | None = None) -> None:
        self.process = process or process_name()
        self.registry = CollectorRegistry(auto_describe=True)
        r, p = self.registry, ("process",)
        self.jobs = Gauge("sora_jobs", "Jobs in the database by state.", (*p, "state"), registry=r)
        self.queue_length = Gauge("sora_queue_length", "Jobs waiting for a free slot.", p, registry=r)
        self.jobs_driven = Gauge("sora_jobs_driven", "Jobs this process is driving now.", p, registry=r)
        self.finished = Counter("sora_jobs_finished", "Jobs this process finished, by outcome and code.",
                                (*p, "outcome", "code"), registry=r)
        self.upstream_latency = Histogram("sora_upstream_request_seconds", "Video API request latency.",
                                          (*p, "endpoint"), buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("sora_upstream_errors", "Video API failures by endpoint and code.",
                                       (*p, "endpoint", "code"), registry=r)
        self.credits = Counter("sora_credits", "Credits held, charged and released by this process.",
                               (*p, "kind"), registry=r)
        self.deliveries = Counter("sora_deliveries", "Videos delivered, by path.", (*p, "path"), registry=r)
        self.discord_refusals = Counter("sora_discord_refusals", "Requests Discord refused (401/403/429).",
                                        (*p, "status"), registry=r)
        self.gateway_latency = Gauge("sora_gateway_latency_seconds", "Discord gateway heartbeat latency.",
                                     (*p, "shard"), registry=r)
        self.loop_lag = Histogram("sora_event_loop_lag_seconds", "How late the event loop ran a timer.", p,
                                  buckets=LAG_BUCKETS, registry=r)
        self.callbacks = Counter("sora_callbacks", "Upstream callbacks received, by result.", (*p, "result"),
                                 registry=r)
        for state in STATES:
            self.jobs.labels(self.process, state).set(0)
        for kind in CREDIT_KINDS:
            self.credits.labels(self.process, kind)
        for path in DELIVERY_PATHS:
            self.deliveries.labels(self.process, path)

    # ---- events --------------------------------------------------------------------------------

    def credits_moved(self, kind: str, amount: int) -> None:
        if kind in CREDIT_KINDS and amount > 0:
            self.credits.labels(self.process, kind).inc(amount)

    def job_finished(self, outcome: str, code: str | None = None) -> None:
        self.finished.labels(self.process, outcome, _code(code)).inc()

    def delivered(self, path: str) -> None:
        self.deliveries.labels(self.process, path if path in DELIVERY_PATHS else "other").inc()

    def upstream_call(self, endpoint: str, seconds: float, error_code: str | None = None) -> None:
        self.upstream_latency.labels(self.process, endpoint).observe(seconds)
        if error_code is not None:
            self.upstream_errors.labels(self.process, endpoint, _code(error_code)).inc()

    def discord_refused(self, status: int) -> None:
        self.discord_refusals.labels(self.process, str(status)).inc()

    def callback(self, result: str) -> None:
        self.callbacks.labels(self.process, result).inc()

    def gateway(self, latencies: Iterable[tuple[int, float]]) -> None:
        for shard, seconds in latencies:
            if math.isfinite(seconds):  # discord.py reports inf or nan before the first heartbeat
                self.gateway_latency.labels(self.process, str(shard)).set(seconds)

    def set_jobs(self, by_state: dict[str, int], queued: int, driven: int) -> None:
        for state in STATES:
            self.jobs.labels(self.process, state).set(by_state.get(state, 0))
        self.queue_length.labels(self.process).set(queued)
        self.jobs_driven.labels(self.process).set(driven)

    def render(self) -> bytes:
        return generate_latest(self.registry)
