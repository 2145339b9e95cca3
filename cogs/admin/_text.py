"""Admin answers as text: balances, ledgers, settings, usage, running jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.discord_app.render import STATE_LABELS, elapsed_text, job_line, when
from storage.reports import MemberSummary


def member_summary(mention: str, summary: MemberSummary) -> str:
    balance, blocked = summary.balance, summary.blocked_reason
    lines = [f"{mention}: **{balance.available} credits** available, {balance.held} held by running jobs."]
    if blocked is not None:
        lines.append(f"⛔ Blocked{': ' + blocked if blocked else ''}.")
    rows = summary.entries
    if rows:
        lines.append("**Latest ledger entries**")
        for e in rows:
            who = f" by <@{e.actor_id}>" if e.actor_id else ""
            job = f" job `{e.job_id[:8]}`" if e.job_id else ""
            reason = f" — {e.reason}" if e.reason else ""
            lines.append(f"`{e.kind:<7}` {e.delta_available:+d}/{e.delta_held:+d}{job}{who} {when(e.created_at)}{reason}")
    else:
        lines.append("No ledger entries yet.")
    return "\n".join(lines)


def settings_text(s: Any) -> str:
    refill = "never" if s.refill_period == "never" else f"top up to {s.refill_amount} {s.refill_period}"
    channels = ", ".join(f"<#{c}>" for c in s.allowed_channel_ids) or "everywhere"
    budget = f"{s.daily_budget} credits/day" if s.daily_budget else "no limit"
    return "\n".join([
        "**Settings for this server**",
        f"Starting credits for new members: {s.starting_credits}",
        f"Default duration: {s.default_duration} s",
        f"Refill: {refill}",
        f"Jobs at once per member: {s.max_jobs_per_member}; in the whole server: {s.max_jobs_per_guild} (more queue)",
        f"Cooldown between a member's jobs: {s.cooldown_seconds} s",
        f"Daily budget: {budget}",
        f"Channels: {channels}",
        f"Blocked words: {len(s.banned_words)}",
    ])


def channels_text(ids: Iterable[int]) -> str:
    listing = ", ".join(f"<#{c}>" for c in ids)
    return f"`/sora` can be used in: {listing}" if listing else "`/sora` can be used in every channel."


def usage_text(u: Any, days: int) -> str:
    states = ", ".join(f"{n} {state}" for state, n in sorted(u.jobs_by_state.items())) or "none"
    returned = u.credits_refunded + u.credits_released
    lines = [
        f"**Usage over the last {days} days**",
        f"Jobs: {u.jobs_total} ({states})",
        f"Credits charged: **{u.credits_charged}** (${u.dollars:,.2f} upstream); "
        f"given back: {returned} ({u.credits_released} released from failed jobs, {u.credits_refunded} refunded by admins)",
    ]
    if u.top_members:
        lines.append("**Top members**")
        lines += [f"{i}. <@{m.user_id}> — {m.credits_charged} credits, {m.jobs} job{'' if m.jobs == 1 else 's'}"
                  for i, m in enumerate(u.top_members[:10], 1)]
    return "\n".join(lines)


def active_jobs_text(jobs: Iterable[Any], position: Callable[[str], int | None] | None) -> str:
    rows = list(jobs)
    if not rows:
        return "No jobs are running or waiting in this server."
    lines = [f"**{len(rows)} job(s) in progress**"]
    for job in rows[:20]:
        place = position(job.id) if position else None
        queue = f" (#{place} in queue)" if place else ""
        lines.append(f"`{job.id[:8]}` <@{job.user_id}> · {STATE_LABELS.get(job.state, job.state)}{queue} · "
                     f"{job_line(job.duration, job.aspect_ratio, job.cost)} · started {when(job.created_at)}")
    return "\n".join(lines)


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing was stored"


def erasure_text(erasure: Any) -> str:
    """Rows deleted per table, led by the unfinished jobs that were stopped (their credits were never charged)."""
    ended = len(erasure.ended_job_ids)
    stopped = f"{ended} unfinished job{'' if ended == 1 else 's'} stopped and not charged, " if ended else ""
    return stopped + counts_text(erasure.counts)


__all__ = ["active_jobs_text", "channels_text", "counts_text", "elapsed_text", "erasure_text", "member_summary",
           "settings_text", "usage_text"]
