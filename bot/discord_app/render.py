"""Text of every public and private message about jobs and credits, kept apart from the Discord calls."""

from __future__ import annotations

from datetime import datetime

from bot.jobs.notifier import StatusUpdate
from bot.pricing import DURATIONS, cost, dollars
from bot.prompts import display_prompt
from storage.errors import ChannelNotAllowed, UserFacingError
from storage.models import Job, JobState
from storage.tiers import Entitlement

STATE_LABELS: dict[JobState, str] = {
    "queued": "⏳ Waiting for a free slot",
    "submitting": "📨 Sending to the video service",
    "running": "🎬 Rendering",
    "completed": "📥 Fetching the video",
    "delivered": "✅ Done",
    "failed": "❌ Failed",
}
BAR_WIDTH = 12
MESSAGE_LIMIT = 2000  # Discord's limit on a message's content; longer is refused (400, code 50035)
STATUS_PROMPT_CAP = 300  # characters of the prompt a status message quotes at most
RESULT_PROMPT_CAP = 500  # ... and the delivery message
NOTE_LIMIT = 400  # a status note is one or two sentences of ours


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


def fit_prompt(prompt: str, room: int, cap: int) -> str:
    """The member's prompt as `display_prompt` shows it (at most `cap` characters of it), shortened until the
    shown text, escapes and all, is at most `room` characters; "" when not even an ellipsis fits.

    Escaping can double a prompt's length (every markdown character gets a backslash, every mention a
    zero-width space), so the cut is searched on the shown text rather than guessed from the raw one.
    """
    if room <= 0:
        return ""
    shown = display_prompt(prompt, cap)
    if len(shown) <= room:
        return shown
    lo, hi = 1, cap  # display_prompt(prompt, 1) is a lone "…"
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(display_prompt(prompt, mid)) <= room:
            lo = mid
        else:
            hi = mid - 1
    shown = display_prompt(prompt, lo)
    return shown if len(shown) <= room else ("…" if room >= 1 else "")


def clip(text: str, room: int) -> str:
    """Plain words of ours (a note, a reason) cut to `room` characters with an ellipsis. Never for links."""
    if len(text) <= room:
        return text
    return text[: max(room - 1, 0)].rstrip() + "…" if room > 0 else ""


def _with_prompt(before: list[str], prompt: str, cap: int, after: list[str]) -> str | None:
    """`before`, a quoted prompt line shortened to what is left, then `after`, within MESSAGE_LIMIT; the prompt
    line is left out when not even an ellipsis fits; None when the fixed lines alone are too long."""
    fixed = "\n".join([*before, *after])
    if len(fixed) > MESSAGE_LIMIT:
        return None
    room = MESSAGE_LIMIT - len(fixed) - len("\n> ")
    shown = fit_prompt(prompt, room, cap)
    if not shown:
        return fixed
    return "\n".join([*before, f"> {shown}", *after])


def status_text(*, user_id: int, prompt: str, duration: int, aspect_ratio: str, credits: int,
                update: StatusUpdate, label: str | None = None) -> str:
    """The public status message: who, what, cost, state, elapsed time, progress or queue place and the
    estimated start (a Discord timestamp, which counts down by itself between our rare edits).

    At most MESSAGE_LIMIT characters by construction: the prompt gets what the fixed lines leave.
    """
    label = label or STATE_LABELS.get(update.state, update.state)
    state = f"**{label}**"
    if update.state == "queued" and update.queue_position:
        state += f" — #{update.queue_position} in the queue"
        if update.eta is not None:
            state += f", starts {eta_text(update.eta)}"
    if update.state == "running" and update.progress is not None:
        state += f" {progress_bar(update.progress)}"
    if not update.final:
        state += f" · {elapsed_text(update.elapsed)} elapsed"
    else:
        state += f" · took {elapsed_text(update.elapsed)}"
    before = [f"Video for <@{user_id}>"]
    after = [job_line(duration, aspect_ratio, credits), state]
    if update.note:
        after.append(clip(update.note, NOTE_LIMIT))
    return _with_prompt(before, prompt, STATUS_PROMPT_CAP, after) or "\n".join([*before, *after])[:MESSAGE_LIMIT]


def result_text(*, user_id: int, prompt: str, duration: int, aspect_ratio: str, credits: int,
                balance: int | None, link: str | None = None, link_expires_at: float | None = None) -> str:
    """The delivery message: mentions the requester (and nobody else), says what it cost.

    At most MESSAGE_LIMIT characters by construction. The requester's mention and the link are never cut:
    the prompt gets what the fixed lines leave (and is dropped when nothing is left), then the balance and
    the job line go; a link too long for any message is left out with a sentence saying where to find it.
    """
    head = f"<@{user_id}> your video is ready!"
    job = job_line(duration, aspect_ratio, credits)
    tail = [f"You have {balance} credits left."] if balance is not None else []
    if not link:
        return _with_prompt([head], prompt, RESULT_PROMPT_CAP, [job, *tail]) or head
    expiry = f" (the link expires <t:{int(link_expires_at)}:R>)" if link_expires_at else ""
    link_line = f"It was too large to upload here, so here is the link{expiry}: {link}"
    for after in ([job, link_line, *tail], [job, link_line], [link_line]):
        text = _with_prompt([head], prompt, RESULT_PROMPT_CAP, after)
        if text is not None:
            return text
    bare = f"{head} {link}"
    if len(bare) <= MESSAGE_LIMIT:
        return bare
    return f"{head} It is too large to upload here, and its link is too long for a Discord message."


def eta_text(eta: float) -> str:
    """An estimated start as Discord's relative timestamp ("in 4 minutes"), hedged: it is an estimate."""
    return f"about <t:{int(eta)}:R>"


CANCELLED_LABEL = "✖️ Cancelled"


def cancelled_status_text(*, user_id: int, prompt: str, duration: int, aspect_ratio: str, credits: int,
                          elapsed: float, by_requester: bool) -> str:
    """The status message of a job cancelled while it waited: who cancelled, and that nothing was charged."""
    who = "its requester" if by_requester else "a server admin"
    update = StatusUpdate(state="failed", elapsed=elapsed, final=True,
                          note=f"Cancelled by {who} before it started. The {credits} credits were released.")
    return status_text(user_id=user_id, prompt=prompt, duration=duration, aspect_ratio=aspect_ratio,
                       credits=credits, update=update, label=CANCELLED_LABEL)


def offer_text(what: str, credits: int, available: int, duration: int, aspect_ratio: str, prompt: str) -> str:
    """A private confirmation that names the cost before anyone is charged (within MESSAGE_LIMIT)."""
    before = [f"{what} for **{credits} credits**? You have {available}."]
    after = [job_line(duration, aspect_ratio, credits)]
    return _with_prompt(before, prompt, STATUS_PROMPT_CAP, after) or before[0]


def refusal_text(error: UserFacingError) -> str:
    """What a member reads for a refusal: the error's own words, with Discord's markup where it helps.

    Storage's wording is plain text; a channel refusal names the allowed channels here, as clickable mentions.
    """
    if isinstance(error, ChannelNotAllowed) and error.allowed_channel_ids:
        where = ", ".join(f"<#{cid}>" for cid in error.allowed_channel_ids[:10])
        return f"Videos can't be made in this channel. Please use {where}."
    return error.user_message


def failure_text(message: str) -> str:
    """The private notice that a job failed (and was refunded), within MESSAGE_LIMIT."""
    return clip(f"Your video couldn't be made. {message}", MESSAGE_LIMIT)


JOBS_PROMPT_CAP = 60  # characters of each prompt /sora jobs quotes


def jobs_text(jobs: list[Job], place: dict[str, tuple[int, float | None]]) -> str:
    """`/sora jobs`: each job's state, what it is, when, and a link that opens its result message; a waiting
    job shows its place in the queue and estimated start (`place`: job id → (place, eta)). Within
    MESSAGE_LIMIT: whole lines only, the oldest dropped first with a note."""
    if not jobs:
        return "You haven't made any videos here yet. Try `/sora generate`."
    lines = []
    for job in jobs:
        label = STATE_LABELS.get(job.state, job.state)
        if job.error_code == "cancelled":
            label = CANCELLED_LABEL
        parts = [label, job_line(job.duration, job.aspect_ratio, job.cost), when(job.created_at)]
        if job.id in place:
            position, eta = place[job.id]
            parts.append(f"#{position} in the queue" + (f", starts {eta_text(eta)}" if eta is not None else ""))
        if job.delivered_message_url:
            parts.append(f"[open the video]({job.delivered_message_url})")
        if job.state == "failed" and job.error_message:
            parts.append(clip(job.error_message, 200))
        lines.append(" · ".join(parts) + f"\n> {display_prompt(job.prompt, JOBS_PROMPT_CAP)}")
    head = "**Your recent videos**"
    while len("\n".join([head, *lines])) > MESSAGE_LIMIT and len(lines) > 1:
        lines.pop()
        head = "**Your recent videos** (the older ones didn't fit)"
    return clip("\n".join([head, *lines]), MESSAGE_LIMIT)


def when(ts: float | None) -> str:
    return f"<t:{int(ts)}:R>" if ts else "never"


def refill_text(amount: int, period: str, next_at: datetime | None) -> str:
    if period == "never" or amount <= 0:
        return "This server does not refill credits automatically; ask an admin for more."
    nxt = f" Next refill <t:{int(next_at.timestamp())}:R>." if next_at else ""
    return f"Your balance is topped up to {amount} credits every {period.removesuffix('ly').replace('dai', 'day')}.{nxt}"


def tier_text(found: Entitlement) -> str:
    """Which tier applies to a member and why: the tiered roles they have (most generous of each), or none."""
    at_once = f"{found.max_jobs_per_member} video{'' if found.max_jobs_per_member == 1 else 's'} at once"
    lengths = ", ".join(f"{d} s" for d in found.durations)
    if not found.tiers:
        return f"You have no tiered role here, so the server's settings apply: {at_once}, videos of {lengths}."
    roles = ", ".join(f"<@&{t.role_id}> ({t.describe()})" for t in found.tiers[:10])
    best = " (the most generous of each)" if len(found.tiers) > 1 else ""
    return (f"Your tier comes from your role{'s' if len(found.tiers) > 1 else ''} {roles}{best}: {at_once}, "
            f"videos of {lengths}.")


def help_text(tier: str | None = None) -> str:
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
        "• Buttons: **Cancel** on a video still waiting in the queue (its credits come back at once); on a "
        "finished video, **Re-roll** (the same again), **Edit** (change the prompt, duration or shape) and "
        "**Extend** (continue from its last frame). Each asks you to confirm the cost first, charged to you.",
        *([f"**Your limits:** {tier}"] if tier else []),
        "Admins manage credits with `/sora-admin` (and role tiers with `/sora-admin tiers`).",
    ])
