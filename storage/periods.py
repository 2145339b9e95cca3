"""UTC refill periods: a key naming the current period, and when the next one starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PERIODS = ("daily", "weekly", "monthly", "never")


def utc(ts: float) -> datetime:
    """A UNIX time as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


def period_key(period: str, ts: float) -> str | None:
    """Name the refill period containing `ts`; None when refills are off.

    Keys differ in their first letter per kind, so changing a server's period starts a fresh period.
    """
    moment = utc(ts)
    if period == "daily":
        return f"D{moment:%Y-%m-%d}"
    if period == "weekly":
        year, week, _ = moment.isocalendar()
        return f"W{year:04d}-W{week:02d}"
    if period == "monthly":
        return f"M{moment:%Y-%m}"
    if period == "never":
        return None
    raise ValueError(f"unknown refill period {period!r}")


def next_period_start(period: str, ts: float) -> datetime | None:
    """When the period after the one containing `ts` begins (UTC midnight); None when refills are off."""
    day = utc(ts).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day + timedelta(days=1)
    if period == "weekly":
        return day + timedelta(days=7 - day.weekday())
    if period == "monthly":
        return day.replace(year=day.year + 1, month=1, day=1) if day.month == 12 else day.replace(
            month=day.month + 1, day=1
        )
    if period == "never":
        return None
    raise ValueError(f"unknown refill period {period!r}")


def day_start(ts: float) -> float:
    """UNIX time of the UTC midnight that began the day containing `ts`."""
    return utc(ts).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
