"""Persistent components: their ids carry what they act on, so a button keeps working after a restart.

Each `custom_id` prefix lives here once; the notifier (building and finding a post's buttons), the cog that
handles them and the tests all read it from here. The handler is the cog that registered the items: it is
found with `interaction.client.get_cog(...)` when pressed, so this module never imports cogs.

- Job buttons (`JobButton`): Cancel on a queued job's status message; Re-roll, Edit and Extend on a delivered
  video. `button_id(action, job id)` = `sora:<action>:<job id>`.
- Offer buttons (`OfferButton`): the Yes / No of a private confirmation that names a cost. The offer itself
  (prompt, duration, image) lives in the cog's memory under the id in the button; after a restart the button
  still answers, saying the offer has expired and nothing was charged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import discord

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

JobAction = Literal["reroll", "cancel", "edit", "extend"]
OFFER_PREFIX = "sora:offer:"
SORA_COG = "sora"  # the members' cog's name (cogs.sora), which handles these buttons
JOB_ID = "[0-9a-f]{32}"
OFFER_ID = "[0-9a-f]{16}"
UNAVAILABLE = "That button isn't available right now; try again in a moment. Nothing was charged."

_LOOKS: dict[JobAction, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.secondary),
    "edit": ("Edit", "✏️", discord.ButtonStyle.secondary),
    "extend": ("Extend", "➡️", discord.ButtonStyle.secondary),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
}


def button_id(action: JobAction, job_id: str) -> str:
    """A job button's custom_id: `sora:<action>:<job id>` (at most 45 characters)."""
    return f"sora:{action}:{job_id}"


def reroll_id(job_id: str) -> str:
    """The Re-roll button's custom_id for a job's delivery post (how a post is found again after a crash)."""
    return button_id("reroll", job_id)


@runtime_checkable
class JobButtonHandler(Protocol):
    """What the cog named SORA_COG offers the buttons: each answers privately, and charges only after a
    confirmation that names the cost (Cancel charges nothing: it gives credits back)."""

    async def on_job_button(self, interaction: discord.Interaction[SoraBot], action: JobAction,
                            job_id: str) -> None: ...

    async def on_offer_button(self, interaction: discord.Interaction[SoraBot], offer_id: str,
                              accepted: bool) -> None: ...


def _handler(interaction: discord.Interaction[SoraBot]) -> JobButtonHandler | None:
    handler = interaction.client.get_cog(SORA_COG)
    return handler if isinstance(handler, JobButtonHandler) else None


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sora:(?P<action>reroll|cancel|edit|extend):(?P<job>" + JOB_ID + ")"):
    """A button about one job; which one is in its custom_id, so it works on posts from before a restart."""

    def __init__(self, action: JobAction, job_id: str) -> None:
        label, emoji, style = _LOOKS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=button_id(action, job_id)))
        self.action: JobAction = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]  # discord.py's hooks take any client; ours is SoraBot
            cls, interaction: discord.Interaction[SoraBot], item: discord.ui.Item[Any], match: re.Match[str], /,
    ) -> JobButton:
        del interaction, item  # the action and job id in the custom_id are all the button needs
        action: JobAction = match["action"]  # type: ignore[assignment]  # the template allows only these
        return cls(action, match["job"])

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]  # as above
        handler = _handler(interaction)
        if handler is None:  # the cog was unloaded between dispatch and now
            await interaction.response.send_message(UNAVAILABLE, ephemeral=True)
            return
        await handler.on_job_button(interaction, self.action, self.job_id)


class OfferButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=re.escape(OFFER_PREFIX) + f"(?P<offer>{OFFER_ID}):(?P<answer>yes|no)"):
    """Yes or No on a private, priced confirmation; the offer is looked up when pressed."""

    def __init__(self, offer_id: str, accepted: bool, label: str | None = None) -> None:
        text = label or ("Yes, make it" if accepted else "Cancel")
        style = discord.ButtonStyle.primary if accepted else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=text, style=style,
                                           custom_id=f"{OFFER_PREFIX}{offer_id}:{'yes' if accepted else 'no'}"))
        self.offer_id, self.accepted = offer_id, accepted

    @classmethod
    async def from_custom_id(  # type: ignore[override]  # as above
            cls, interaction: discord.Interaction[SoraBot], item: discord.ui.Item[Any], match: re.Match[str], /,
    ) -> OfferButton:
        del interaction, item
        return cls(match["offer"], match["answer"] == "yes")

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:  # type: ignore[override]  # as above
        handler = _handler(interaction)
        if handler is None:
            await interaction.response.send_message(UNAVAILABLE, ephemeral=True)
            return
        await handler.on_offer_button(interaction, self.offer_id, self.accepted)


def job_buttons(job_id: str, *actions: JobAction) -> discord.ui.View:
    """A view (all dynamic items: discord.py keeps nothing per message) with these buttons of one job."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def offer_buttons(offer_id: str, yes_label: str | None = None) -> discord.ui.View:
    """The Yes / No buttons of a priced confirmation."""
    view = discord.ui.View(timeout=None)
    view.add_item(OfferButton(offer_id, True, yes_label))
    view.add_item(OfferButton(offer_id, False))
    return view
