"""The upstream's task and credits, read tolerantly: unknown statuses kept, missing fields allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.upstream.errors import BadResponse

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "error", "expired"})


@dataclass(frozen=True, slots=True)
class Task:
    """One upstream task as last read."""

    id: str
    status: str  # "pending" | "processing" | "completed" | "failed" (unknown kept as-is)
    progress: float | None  # 0..100 when the upstream gives it
    video_urls: tuple[str, ...]
    error_code: str | None
    error_message: str | None
    created_at: int | None
    completed_at: int | None

    @property
    def is_terminal(self) -> bool:
        """True once the task will never change again (completed, or any flavour of failure)."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Credits:
    """The operator's upstream balance."""

    balance: int
    total_purchased: int | None
    total_consumed: int | None


def _unwrap(data: object) -> object:
    """Accept the bare object (as documented) or the provider's {"code","msg","data":{...}} envelope."""
    if isinstance(data, dict) and "status" not in data and "balance" not in data and isinstance(data.get("data"), dict):
        return data["data"]
    return data


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _progress(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):  # JSON gives nothing else
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return min(100.0, max(0.0, number))


def parse_task(data: object, task_id: str) -> Task:
    """Read a task object; only a missing status makes it unreadable.

    Raises:
        BadResponse: the body is not a task at all.
    """
    data = _unwrap(data)
    if not isinstance(data, dict):
        raise BadResponse("task answer is not a JSON object")
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise BadResponse("task answer has no status")
    output = data.get("output")
    output = output if isinstance(output, dict) else {}
    urls = output.get("urls")
    urls = urls if isinstance(urls, list) else []
    error = data.get("error")
    error_code = error_message = None
    if isinstance(error, dict):
        error_code = str(error["code"]) if error.get("code") is not None else None
        error_message = str(error["message"]) if error.get("message") is not None else None
    elif isinstance(error, str):
        error_message = error
    raw_id = data.get("id", data.get("taskId"))
    return Task(
        id=str(raw_id) if raw_id else task_id,
        status=status.strip().lower(),
        progress=_progress(data.get("progress")),
        video_urls=tuple(u for u in urls if isinstance(u, str) and u),
        error_code=error_code,
        error_message=error_message,
        created_at=_int(data.get("created_at")),
        completed_at=_int(data.get("completed_at")),
    )


def parse_credits(data: object) -> Credits:
    """Read the credits answer.

    Raises:
        BadResponse: no readable balance.
    """
    data = _unwrap(data)
    balance = _int(data.get("balance")) if isinstance(data, dict) else None
    if balance is None or not isinstance(data, dict):
        raise BadResponse("credits answer has no balance")
    return Credits(
        balance=balance,
        total_purchased=_int(data.get("total_purchased")),
        total_consumed=_int(data.get("total_consumed")),
    )


def parse_task_id(data: object) -> str:
    """Read the task id from the create answer.

    Raises:
        BadResponse: no task id (the task may still have been accepted: never retry blindly).
    """
    inner = _unwrap(data)
    task_id = None
    if isinstance(inner, dict):
        task_id = inner.get("taskId", inner.get("task_id", inner.get("id")))
    if not isinstance(task_id, str) or not task_id:
        raise BadResponse("create answer has no taskId", retryable=False)
    return task_id
