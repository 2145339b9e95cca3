"""The members' forms (Animate with Sora, Edit, Extend) and how their answers are read back.

A form is sent already stopped, so discord.py keeps nothing of it in memory; its custom id says what it is
for, and the cog reads the submitted values itself (`submitted`). So a form left open for an hour, or open
across a restart, still gets an answer (Edit and Extend carry their job in the custom id and simply work; an
Animate form's image is in the cog's memory, and a lost one is answered "expired, nothing was charged").

Duration and aspect ratio are choices (selects in labels, discord.py 2.6+), never free text, and the prompt
holds at most 4,000 characters, Discord's limit for a modal's text input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import discord

from bot.pricing import ASPECT_RATIOS, DURATIONS, duration_label
from cogs.sora._flow import Refusal

ANIMATE_FORM = "sora:animate-form:"  # + the id of the open form's image in the cog's memory
EDIT_FORM = "sora:edit-form:"  # + the job id
EXTEND_FORM = "sora:extend-form:"  # + the job id
PROMPT_IN_FORM = 4000  # Discord's maximum for a modal text input
PROMPT, DURATION, RATIO = "prompt", "duration", "aspect_ratio"
RATIO_NAMES = {"16:9": "16:9 · landscape", "9:16": "9:16 · portrait"}


def _prompt_input(default: str | None, placeholder: str) -> discord.ui.Label[Any]:
    cut = default[:PROMPT_IN_FORM] if default else None
    note = "Cut to its first 4,000 characters, the most a form holds." if default and len(default) > len(
        cut or "") else None
    field: discord.ui.TextInput[Any] = discord.ui.TextInput(
        style=discord.TextStyle.paragraph, custom_id=PROMPT, min_length=1, max_length=PROMPT_IN_FORM,
        default=cut, placeholder=placeholder)
    return discord.ui.Label(text="Prompt", description=note, component=field)


def _duration_select(durations: Iterable[int], chosen: int) -> discord.ui.Label[Any]:
    options = [discord.SelectOption(label=duration_label(d), value=str(d), default=d == chosen) for d in durations]
    select: discord.ui.Select[Any] = discord.ui.Select(custom_id=DURATION, options=options, min_values=1,
                                                       max_values=1, required=True)
    return discord.ui.Label(text="Duration", description="Longer videos cost more", component=select)


def _ratio_select(chosen: str) -> discord.ui.Label[Any]:
    options = [discord.SelectOption(label=RATIO_NAMES[r], value=r, default=r == chosen) for r in ASPECT_RATIOS]
    select: discord.ui.Select[Any] = discord.ui.Select(custom_id=RATIO, options=options, min_values=1,
                                                       max_values=1, required=True)
    return discord.ui.Label(text="Aspect ratio", component=select)


def build_form(custom_id: str, title: str, *, durations: Iterable[int], duration: int, aspect_ratio: str | None,
               prompt: str | None = None, placeholder: str = "What should happen in the video?") -> discord.ui.Modal:
    """A form with the prompt, a duration choice and (unless `aspect_ratio` is None) an aspect ratio choice."""
    form = discord.ui.Modal(title=title, custom_id=custom_id, timeout=None)
    form.add_item(_prompt_input(prompt, placeholder))
    form.add_item(_duration_select(durations, duration))
    if aspect_ratio is not None:
        form.add_item(_ratio_select(aspect_ratio))
    form.stop()  # sent stopped: discord.py keeps no copy; the cog answers the submit from its values
    return form


def submitted(data: Mapping[str, Any] | None) -> dict[str, str]:
    """A submitted form's values by custom id (a select's first choice), from the raw interaction data."""
    values: dict[str, str] = {}

    def walk(components: Iterable[Any]) -> None:
        for comp in components:
            if not isinstance(comp, dict):
                continue
            if isinstance(comp.get("component"), dict):
                walk([comp["component"]])
            walk(comp.get("components") or [])
            cid = comp.get("custom_id")
            if not isinstance(cid, str):
                continue
            if isinstance(comp.get("value"), str):
                values[cid] = comp["value"]
            elif isinstance(comp.get("values"), list) and comp["values"]:
                values[cid] = str(comp["values"][0])

    walk((data or {}).get("components") or [])
    return values


def choices(values: Mapping[str, str]) -> tuple[str, int | None, str | None]:
    """The prompt, duration and aspect ratio of a submitted form (None where the form had no such field).

    A Discord client can only send the offered choices; anything else came from a forged request.

    Raises:
        Refusal: a duration or aspect ratio that was never offered.
    """
    raw_duration, ratio = values.get(DURATION), values.get(RATIO)
    if raw_duration is not None and (not raw_duration.isdigit() or int(raw_duration) not in DURATIONS):
        raise Refusal("Duration must be 4, 8 or 12 seconds. Nothing was charged.")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        raise Refusal("Aspect ratio must be 16:9 or 9:16. Nothing was charged.")
    return values.get(PROMPT, ""), int(raw_duration) if raw_duration is not None else None, ratio
