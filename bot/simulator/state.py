"""Everything the simulator knows and every switch it offers, free of HTTP so tests can drive it directly.

Time comes from a scalable clock: at `speed` 60 a ten-minute job takes ten seconds, and at speed 0 time
stands still until a test calls `advance()`. Task states are derived from that clock when read.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.simulator.video import VideoCache

# The error table of API.md: code -> (status, type, message).
ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request": (400, "invalid_request_error", "Missing or invalid parameters"),
    "invalid_api_key": (401, "authentication_error", "API key is invalid, disabled, or deleted"),
    "insufficient_credits": (402, "billing_error", "Your credit balance is too low. Please top up."),
    "ip_not_allowed": (403, "permission_error", "Request IP not in the key's allowlist"),
    "model_not_found": (404, "invalid_request_error", "Model does not exist or is inactive"),
    "task_not_found": (404, "invalid_request_error", "Task ID does not exist"),
    "rate_limit_exceeded": (429, "rate_limit_error", "Too many requests, please slow down"),
    "spend_limit_exceeded": (429, "billing_error", "Key spend limit reached (hourly/daily/total)"),
    "internal_error": (500, "api_error", "Unexpected server error"),
    "upstream_error": (503, "upstream_error", "Upstream AI provider returned an error"),
}
# Misbehaviours beyond the table: never answer, cut the connection, broken JSON, a status string the
# docs never mention, a bare 502 from a proxy, an HTML page where the video should be, a proper answer that
# comes `retry_after` seconds late ("slow"), and a create that makes its task but whose answer is lost.
ODD_FAULTS = ("hang", "drop", "malformed", "unknown_status", "bad_gateway", "wrong_content_type", "expired",
              "slow", "lost_answer")
FAULT_KINDS = (*ERRORS, *ODD_FAULTS)
WHERE = ("create", "poll", "credits", "video", "any")
CREDITS_PER_SECOND = 25


def error_body(code: str, message: str | None = None) -> dict[str, Any]:
    """The documented error JSON shape."""
    _, kind, default = ERRORS[code]
    return {"error": {"code": code, "message": message or default, "type": kind}}


class SimClock:
    """Wall-clock seconds, run `speed` times faster than real time, plus whatever `advance` added."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        self._base = time.time() if start is None else start
        self._mono = time.monotonic()
        self._speed = speed

    def now(self) -> float:
        return self._base + (time.monotonic() - self._mono) * self._speed

    __call__ = now

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._base, self._mono, self._speed = self.now(), time.monotonic(), float(value)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (tests use speed 0 and this)."""
        self._base += seconds


@dataclass
class Fault:
    """Misbehave on the next `count` requests at `where` (create, poll, credits, video or any API call)."""

    kind: str
    where: str = "any"
    count: int = 1
    retry_after: float | str | None = None
    message: str | None = None


@dataclass
class SimTask:
    id: str
    prompt: str
    duration: int
    aspect_ratio: str
    image_urls: list[str]
    callback_url: str | None
    created: float
    pending_seconds: float
    processing_seconds: float
    fail: bool
    cost: int
    status: str = "pending"
    completed_at: float | None = None
    file_token: str | None = None
    callback_due: float | None = None
    callback_attempts: int = 0
    base_url: str = ""  # the address the client used, for output URLs in callbacks


@dataclass
class FileLink:
    task_id: str
    duration: int
    aspect_ratio: str
    expires_at: float


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received; the Authorization value is replaced by "[redacted]"."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float

    @property
    def authorized(self) -> bool:
        return any(k.lower() == "authorization" for k in self.headers)


@dataclass(frozen=True)
class CallbackAttempt:
    task_id: str
    url: str
    event: str
    status: int | None  # None when the connection failed
    at: float


SETTABLE = {
    "speed": float, "pending_seconds": float, "processing_seconds": float, "progress": str, "fail_next": int,
    "video_bytes": int, "link_expiry": float, "balance": int, "public_url": str,
}


@dataclass
class SimulatorState:
    """The simulator's world: balance, tasks, files, switches and a log of everything received."""

    clock: SimClock = field(default_factory=SimClock)
    balance: int = 1_000_000
    total_purchased: int = 1_000_000
    total_consumed: int = 0
    pending_seconds: float = 1.0
    processing_seconds: float = 20.0
    progress: str = "number"  # "number" or "null": what `progress` says while processing
    fail_next: int = 0  # the next N tasks end `failed`
    video_bytes: int | None = None  # pad served videos to this size
    link_expiry: float = 24 * 3600.0
    callback_retry_delays: tuple[float, ...] = (0.0, 180.0, 600.0)  # after a failed attempt: at once, ~3, ~10 min
    public_url: str | None = None  # base of output URLs; default: the host the client used
    videos: VideoCache = field(default_factory=VideoCache)
    faults: list[Fault] = field(default_factory=list)
    tasks: dict[str, SimTask] = field(default_factory=dict)
    files: dict[str, FileLink] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    callbacks: list[CallbackAttempt] = field(default_factory=list)

    @property
    def speed(self) -> float:
        return self.clock.speed

    @speed.setter
    def speed(self, value: float) -> None:
        self.clock.speed = value

    def now(self) -> float:
        return self.clock.now()

    # ---- switches --------------------------------------------------------------------------------

    def inject(self, kind: str, where: str = "any", count: int = 1, retry_after: float | str | None = None,
               message: str | None = None) -> Fault:
        """Queue a misbehaviour for the next `count` matching requests."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if where not in WHERE:
            raise ValueError(f"unknown place {where!r}; one of {', '.join(WHERE)}")
        fault = Fault(kind, where, max(1, int(count)), retry_after, message)
        self.faults.append(fault)
        return fault

    def take_fault(self, where: str) -> Fault | None:
        """Use up one matching fault (video faults only match `video`)."""
        for fault in self.faults:
            if fault.where == where or (fault.where == "any" and where != "video"):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def configure(self, values: dict[str, Any]) -> None:
        """Set switches by name (the control endpoint and the CLI use this)."""
        for name, value in values.items():
            if name == "callback_retry_delays":
                self.callback_retry_delays = tuple(float(v) for v in value)
            elif name in SETTABLE:
                setattr(self, name, None if value is None else SETTABLE[name](value))
            else:
                raise ValueError(f"unknown setting {name!r}")
        if self.progress not in ("number", "null"):
            raise ValueError("progress must be 'number' or 'null'")

    def requests_to(self, prefix: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(prefix) and (method is None or r.method == method)]

    # ---- tasks -----------------------------------------------------------------------------------

    def create_task(self, *, prompt: str, duration: int, aspect_ratio: str, image_urls: list[str],
                    callback_url: str | None, base_url: str = "") -> SimTask:
        cost = duration * CREDITS_PER_SECOND
        self.balance -= cost
        self.total_consumed += cost
        fail = self.fail_next > 0
        if fail:
            self.fail_next -= 1
        task = SimTask(
            id=str(uuid.uuid4()), prompt=prompt, duration=duration, aspect_ratio=aspect_ratio,
            image_urls=image_urls, callback_url=callback_url, created=self.now(),
            pending_seconds=self.pending_seconds, processing_seconds=self.processing_seconds, fail=fail, cost=cost,
            base_url=base_url,
        )
        self.tasks[task.id] = task
        return task

    def refresh(self, task: SimTask) -> SimTask:
        """Move a task along the clock; on reaching the end, settle credits and schedule its callback."""
        if task.status in ("completed", "failed"):
            return task
        elapsed = self.now() - task.created
        if elapsed < task.pending_seconds:
            return task
        if elapsed < task.pending_seconds + task.processing_seconds:
            task.status = "processing"
            return task
        task.completed_at = task.created + task.pending_seconds + task.processing_seconds
        if task.fail:
            task.status = "failed"
            self.balance += task.cost
            self.total_consumed -= task.cost
        else:
            task.status = "completed"
            task.file_token = secrets.token_urlsafe(24)
            self.files[task.file_token] = FileLink(task.id, task.duration, task.aspect_ratio,
                                                   task.completed_at + self.link_expiry)
        if task.callback_url:
            task.callback_due = self.now()
        return task

    def refresh_all(self) -> None:
        for task in list(self.tasks.values()):
            self.refresh(task)

    def task_json(self, task: SimTask, base_url: str) -> dict[str, Any]:
        """The task exactly as API.md shows it for its state."""
        body: dict[str, Any] = {"id": task.id, "status": task.status, "model": "sora-2", "created_at": int(task.created)}
        if task.status == "processing":
            body["progress"] = None if self.progress == "null" else self._progress(task)
        elif task.status == "completed":
            assert task.file_token is not None and task.completed_at is not None
            link = self.files[task.file_token]
            url = (f"{(self.public_url or base_url).rstrip('/')}/files/{task.file_token}/{task.id}.mp4"
                   f"?expires={int(link.expires_at)}")
            body["completed_at"] = int(task.completed_at)
            body["output"] = {"urls": [url], "metadata": {"duration": task.duration, "prompt": task.prompt}}
        elif task.status == "failed":
            body["error"] = {"code": "upstream_error", "message": "Video generation failed"}
        return body

    def _progress(self, task: SimTask) -> int:
        if task.processing_seconds <= 0:
            return 99
        done = (self.now() - task.created - task.pending_seconds) / task.processing_seconds
        return max(0, min(99, int(done * 100)))

    def due_callbacks(self) -> list[SimTask]:
        now = self.now()
        return [t for t in self.tasks.values() if t.callback_due is not None and t.callback_due <= now]

    def callback_result(self, task: SimTask, ok: bool) -> None:
        """After an attempt: done on 2xx, else schedule the next retry (at once, then the configured delays)."""
        task.callback_attempts += 1
        if ok:
            task.callback_due = None
            return
        retry = task.callback_attempts - 1
        if retry < len(self.callback_retry_delays):
            task.callback_due = self.now() + self.callback_retry_delays[retry]
        else:
            task.callback_due = None

    def summary(self) -> dict[str, Any]:
        return {
            "balance": self.balance, "speed": self.speed, "now": self.now(),
            "tasks": {t.id: t.status for t in self.tasks.values()},
            "faults": [vars(f) for f in self.faults], "requests": len(self.requests),
            "callbacks": len(self.callbacks),
        }
