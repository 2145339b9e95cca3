"""The runner's knobs and the one way a job ends early, shared by the runner and its delivery step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.upstream.retry import RetryPolicy

LINK_LIFETIME = 24 * 3600.0  # how long a finished video's link lives when the upstream does not say
MAX_CREATES = 6  # creates one job may send in all, across restarts: each one may bill the operator


class JobFailed(Exception):
    """End a job as failed (its hold released) with this code and friendly sentence."""

    def __init__(self, code: str, user_message: str) -> None:
        super().__init__(code)
        self.code = code
        self.user_message = user_message

@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Knobs of the runner; defaults suit production, tests shrink the times."""

    max_running: int = 20
    video_dir: Path = Path("data/videos")
    callback_base_url: str | None = None
    max_video_bytes: int = 512 * 1024 * 1024
    download_timeout: float = 600.0
    max_creates: int = MAX_CREATES
    poll_retries: int = 12  # status reads failing in a row (after the client's own retries) before refunding
    job_timeout: float = 12 * 3600.0  # JOB_TIMEOUT: a task still unfinished this long after submit is given up
    unconfirmed_wait: float = 3600.0  # how long a create whose answer was lost waits for its task's callback
    health_interval: float = 60.0  # how often paused intake re-reads the balance, and dead tokens go
    retry_base: float = 2.0
    retry_cap: float = 120.0
    queue_refresh: float = 10.0  # how often a queued job looks up its place again
    lease_seconds: float = 30.0  # JOB_LEASE_SECONDS: a claim on a job lasts this long without renewal
    claim_interval: float = 5.0  # how often an idle process looks for jobs to claim when no wake-up came
    process_name: str | None = None  # SORA_PROCESS_NAME: the readable part of this process's owner name

    def backoff(self, attempts: int | None = None) -> RetryPolicy:
        """The one retry policy for the runner's waits: creates, status reads, downloads, deliveries."""
        return RetryPolicy(max_attempts=attempts or self.max_creates, base_delay=self.retry_base,
                           max_delay=self.retry_cap)
