"""Prices and choices of the Sora 2 model; bot credits are the upstream's credits (1 credit = $0.005)."""

from __future__ import annotations

CREDITS_PER_SECOND = 25
DOLLARS_PER_CREDIT = 0.005
DURATIONS: tuple[int, ...] = (4, 8, 12)
ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16")
DEFAULT_ASPECT_RATIO = "16:9"
MAX_PROMPT_LENGTH = 5000


def cost(duration: int) -> int:
    """Return the credits a video of `duration` seconds costs.

    Raises:
        ValueError: the model does not make videos of that length.
    """
    if duration not in DURATIONS:
        raise ValueError(f"duration must be one of {', '.join(map(str, DURATIONS))} seconds")
    return duration * CREDITS_PER_SECOND


def dollars(credits: int) -> float:
    """Return what `credits` cost the operator in US dollars."""
    return round(credits * DOLLARS_PER_CREDIT, 4)


def duration_label(duration: int) -> str:
    """Label a duration choice with its cost, so members see the price before they pick."""
    return f"{duration} s · {cost(duration)} credits"
