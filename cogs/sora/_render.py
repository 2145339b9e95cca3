"""Text of every public and private message about jobs and credits, kept apart from the Discord calls."""

from __future__ import annotations

from datetime import datetime

from bot.jobs.notifier import StatusUpdate
from bot.pricing import DURATIONS, cost, dollars
from bot.prompts import display_prompt

STATE_LABELS = {
    "queued": "⏳ Waiting for a free slot",
    "submitting": "📨 Sending to the video service",
    "running": "🎬 Rendering",
    "completed": "📥 Fetching the video",
    "delivered": "✅ Done",
    "failed": "❌ Failed",
}
BAR_WIDTH = 12


def elapsed_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def progress_bar(percent: float) -> str:
    percent = max(0.0, min(100.0, percent))
    filled = round(percent / 100 * BAR_WIDTH)
    return f"`{'█' * filled}{'░' * (BAR_WIDTH - filled)}` {percent:.0f}%"


def job_line(duration: int, aspect_ratio: str, credits: int) -> str:
    return f"{duration} s · {aspect_ratio} · {credits} credits"


def status_text(*, user_id: int, prompt: str, duration: int, aspect_ratio: str, credits: int,
                update: StatusUpdate) -> str:
    """The public status message: who, what, cost, state, elapsed time, progress or queue place."""
    label = STATE_LABELS.get(update.state, update.state)
    state = f"**{label}**"
    if update.state == "queued" and update.queue_position:
        state += f" — #{update.queue_position} in the queue"
    if update.state == "running" and update.progress is not None:
        state += f" {progress_bar(update.progress)}"
    if not update.final:
        state += f" · {elapsed_text(update.elapsed)} elapsed"
    else:
        state += f" · took {elapsed_text(update.elapsed)}"
    lines = [
        f"Video for <@{user_id}>",
        f"> {display_prompt(prompt, 300)}",
        job_line(duration, aspect_ratio, credits),
        state,
    ]
    if update.note:
        lines.append(update.note)
    return "\n".join(lines)


def result_text(*, user_id: int, prompt: str, duration: int, aspect_ratio: str, credits: int,
                balance: int | None, link: str | None = None, link_expires_at: float | None = None) -> str:
    """The delivery message: mentions the requester (and nobody else), says what it cost."""
    lines = [f"<@{user_id}> your video is ready!", f"> {display_prompt(prompt, 500)}",
             job_line(duration, aspect_ratio, credits)]
    if link:
        expiry = f" (the link expires <t:{int(link_expires_at)}:R>)" if link_expires_at else ""
        lines.append(f"It was too large to upload here, so here is the link{expiry}: {link}")
    if balance is not None:
        lines.append(f"You have {balance} credits left.")
    return "\n".join(lines)


def when(ts: float | None) -> str:
    return f"<t:{int(ts)}:R>" if ts else "never"


def refill_text(amount: int, period: str, next_at: datetime | None) -> str:
    if period == "never" or amount <= 0:
        return "This server does not refill credits automatically; ask an admin for more."
    nxt = f" Next refill <t:{int(next_at.timestamp())}:R>." if next_at else ""
    return f"Your balance is topped up to {amount} credits every {period.removesuffix('ly').replace('dai', 'day')}.{nxt}"


def help_text() -> str:
    prices = ", ".join(f"{d} s = {cost(d)} credits (${dollars(cost(d)):.2f})" for d in DURATIONS)
    return "\n".join([
        "**Sora video bot** — turn a prompt (and optionally a picture) into a short video with Sora 2.",
        "• `/sora generate prompt:… [duration] [aspect_ratio] [image]` — make a video; progress is shown in the channel.",
        "• Right-click a message with an image → Apps → **Animate with Sora** to use it as the first frame.",
        "• `/sora balance` — your credits; `/sora jobs` — your recent videos.",
        f"**Prices:** {prices}. Credits are held when you start and charged only when the video is delivered; "
        "failed jobs are refunded automatically.",
        "**Limits:** prompts up to 5,000 characters; images JPEG, PNG or WebP, at most 10 MB, shortest side at "
        "least 300 px, shape between 2:5 and 5:2. Videos are 16:9 or 9:16, 4, 8 or 12 seconds.",
        "Admins manage credits with `/sora-admin`.",
    ])
