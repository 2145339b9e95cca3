"""`/sora-admin …`: credits, blocks, refunds, settings, usage and status, for Manage Server only."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.pricing import DURATIONS, dollars
from bot.upstream.errors import VideoAPIError
from cogs.admin import _charts, _text
from cogs.admin._tiers import TierCommands, audit_lines
from storage.db import Database
from storage.errors import AmountOutOfRange
from storage.models import Job
from storage.reports import Erasure

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)
T = TypeVar("T")

# The most one admin command moves (registered as the option's bounds). A client that ignores registered
# bounds can still send anything, so the commands check again; storage caps an entry and a member's balance at
# 1,000,000,000 (storage.ledger.MAX_ENTRY / MAX_BALANCE) and the database refuses anything beyond.
MAX_CREDITS = 10_000_000
MAX_STOPPED_EDITS = 25  # status messages an erasure rewrites at most (each is one request to Discord)
STOPPED_TEXT = "⏹️ This video was stopped: a server admin deleted the data behind it. No credits were charged."
Amount = app_commands.Range[int, -MAX_CREDITS, MAX_CREDITS]
NonNegative = app_commands.Range[int, 0, MAX_CREDITS]
PERIODS = [app_commands.Choice(name=p, value=p) for p in ("daily", "weekly", "monthly", "never")]
ACTIONS = [app_commands.Choice(name=a, value=a) for a in ("add", "remove", "clear", "list")]


def amount_refusal(amount: object, low: int) -> str | None:
    """Why an admin's amount cannot be used (None when it can): not a whole number, or outside low..MAX_CREDITS."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not low <= amount <= MAX_CREDITS:
        return (f"The amount must be a whole number of credits from {low:,} to {MAX_CREDITS:,}. "
                "Nothing was changed.")
    return None


async def _private(interaction: discord.Interaction[SoraBot], text: str, file: discord.File | None = None) -> None:
    """Answer the (already deferred) admin command privately; the followup replaces "thinking…"."""
    await interaction.followup.send(text[:2000], ephemeral=True, file=file or discord.utils.MISSING)


async def _refused_amount(interaction: discord.Interaction[SoraBot], amount: object, low: int) -> bool:
    """Answer an amount that cannot be used (see amount_refusal) and say so; False when it can be used."""
    refusal = amount_refusal(amount, low)
    if refusal is not None:
        await _private(interaction, refusal)
    return refusal is not None


async def _ledger_write(interaction: discord.Interaction[SoraBot], write: Awaitable[T]) -> T | None:
    """An admin's write to the ledger; one storage refuses as out of range is answered privately (→ None)."""
    try:
        return await write
    except AmountOutOfRange as exc:
        await _private(interaction, f"{exc.user_message} Nothing was changed.")
        return None


def _guild(interaction: discord.Interaction[SoraBot]) -> int:
    """The server of an admin command (AdminCog.interaction_check has refused any other)."""
    assert interaction.guild_id is not None
    return interaction.guild_id


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(TierCommands, commands.GroupCog, group_name="sora-admin",
               group_description="Manage Sora credits and settings"):
    """Every command re-checks Manage Server here: Discord's default permission can be overridden by admins."""

    quota = app_commands.Group(name="quota", description="Members' credits")
    config = app_commands.Group(name="config", description="This server's settings")
    data = app_commands.Group(name="data", description="Delete stored data")

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[SoraBot]) -> bool:  # type: ignore[override]
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        # Acknowledge before any database work, so a busy database never breaks the 3-second deadline.
        await interaction.response.defer(ephemeral=True, thinking=True)
        return True

    @property
    def db(self) -> Database:
        return self.bot.db

    # ---- quota ---------------------------------------------------------------------------------

    @quota.command(name="set", description="Set a member's balance")
    @app_commands.describe(user="The member", amount="Their new balance in credits (100 = one 4 s video)")
    async def quota_set(self, interaction: discord.Interaction[SoraBot], user: discord.User, amount: NonNegative) -> None:
        if await _refused_amount(interaction, amount, 0):  # before any write: reading may grant starting credits
            return
        balance = await _ledger_write(interaction, self.db.ledger.set_balance(
            _guild(interaction), user.id, amount, interaction.user.id, f"set by {interaction.user}"))
        if balance is not None:
            await _private(interaction, f"{user.mention} now has **{balance.available} credits**.")

    @quota.command(name="add", description="Give (or, with a negative amount, take) credits")
    @app_commands.describe(user="The member", amount="Credits to add; negative takes away (never below 0)")
    async def quota_add(self, interaction: discord.Interaction[SoraBot], user: discord.User, amount: Amount) -> None:
        if await _refused_amount(interaction, amount, -MAX_CREDITS):
            return
        if amount == 0:
            await _private(interaction, "Adding 0 credits changes nothing.")
            return
        before = await self.db.ledger.balance(_guild(interaction), user.id)
        balance = await _ledger_write(interaction, self.db.ledger.adjust(
            _guild(interaction), user.id, amount, interaction.user.id, f"adjusted by {interaction.user}"))
        if balance is None:
            return
        applied = balance.available - before.available
        note = "" if applied == amount else f" (only {abs(applied)} could be taken: a balance never goes below 0)"
        await _private(interaction, f"{user.mention} now has **{balance.available} credits**{note}.")

    @quota.command(name="show", description="A member's balance and latest ledger entries")
    @app_commands.describe(user="The member")
    async def quota_show(self, interaction: discord.Interaction[SoraBot], user: discord.User) -> None:
        summary = await self.db.reports.member_summary(_guild(interaction), user.id, limit=10)
        await _private(interaction, _text.member_summary(user.mention, summary))

    # ---- blocks and refunds ----------------------------------------------------------------------

    @app_commands.command(name="block", description="Stop a member from generating videos")
    @app_commands.describe(user="The member to block", reason="Why (shown to admins in quota show)")
    async def block(self, interaction: discord.Interaction[SoraBot], user: discord.User,
                    reason: app_commands.Range[str, 0, 300] | None = None) -> None:
        await self.db.guilds.block(_guild(interaction), user.id, reason or "", interaction.user.id)
        await _private(interaction, f"{user.mention} can no longer generate videos here.")

    @app_commands.command(name="unblock", description="Let a blocked member generate again")
    @app_commands.describe(user="The member to unblock")
    async def unblock(self, interaction: discord.Interaction[SoraBot], user: discord.User) -> None:
        was = await self.db.guilds.unblock(_guild(interaction), user.id)
        await _private(interaction, f"{user.mention} can generate again." if was else f"{user.mention} wasn't blocked.")

    @app_commands.command(name="refund", description="Give back a job's credits by hand (once)")
    @app_commands.describe(job="The job id (from /sora-admin jobs or /sora-admin quota show)")
    async def refund(self, interaction: discord.Interaction[SoraBot], job: app_commands.Range[str, 4, 64]) -> None:
        found = await self.db.jobs.find(_guild(interaction), job)  # another server's job does not exist here
        if found is None:
            await _private(interaction, "No job with that id in this server (give at least its first 8 characters).")
            return
        done = await _ledger_write(interaction, self.db.ledger.refund(found.id, interaction.user.id,
                                                                      f"refunded by {interaction.user}"))
        if done is None:
            return
        if done:
            await _private(interaction, f"Refunded **{found.cost} credits** to <@{found.user_id}> for job `{found.id[:8]}`.")
        else:
            await _private(interaction, f"Job `{found.id[:8]}` was already refunded; nothing changed.")

    # ---- config --------------------------------------------------------------------------------

    @config.command(name="show", description="This server's settings")
    async def config_show(self, interaction: discord.Interaction[SoraBot]) -> None:
        settings = await self.db.guilds.get(_guild(interaction))
        changes = audit_lines(await self.db.tiers.audit(_guild(interaction)))
        tiers = ["**Tier changes** (latest first; `/sora-admin tiers show` lists them)", *changes] if changes else []
        await _private(interaction, "\n".join([_text.settings_text(settings), *tiers]))

    @config.command(name="defaults", description="Starting credits for new members and the default duration")
    @app_commands.describe(starting_credits="Credits a member new to the bot starts with",
                           default_duration="Duration when a member does not pick one")
    @app_commands.choices(default_duration=[app_commands.Choice(name=f"{d} s", value=d) for d in DURATIONS])
    async def config_defaults(self, interaction: discord.Interaction[SoraBot], starting_credits: NonNegative | None = None,
                              default_duration: app_commands.Choice[int] | None = None) -> None:
        changes: dict[str, object] = {}
        if starting_credits is not None:
            changes["starting_credits"] = starting_credits
        if default_duration is not None:
            changes["default_duration"] = default_duration.value
        await self._update(interaction, changes)

    @config.command(name="refill", description="Top every member up to an amount each period")
    @app_commands.choices(period=PERIODS)
    @app_commands.describe(amount="Balance each member is topped up to (not added to)", period="How often")
    async def config_refill(self, interaction: discord.Interaction[SoraBot], amount: NonNegative,
                            period: app_commands.Choice[str]) -> None:
        await self._update(interaction, {"refill_amount": amount, "refill_period": period.value})

    @config.command(name="limits", description="Jobs at once per member, cooldown, daily budget, jobs at once here")
    @app_commands.describe(per_member="Jobs one member may run at once", cooldown="Seconds between a member's jobs",
                           daily_budget="Credits this server may spend per day (0 = no limit)",
                           server_jobs="Jobs running at once in this server; more wait in a queue")
    async def config_limits(self, interaction: discord.Interaction[SoraBot],
                            per_member: app_commands.Range[int, 1, 50] | None = None,
                            cooldown: app_commands.Range[int, 0, 86400] | None = None,
                            daily_budget: NonNegative | None = None,
                            server_jobs: app_commands.Range[int, 1, 100] | None = None) -> None:
        changes = {k: v for k, v in {"max_jobs_per_member": per_member, "cooldown_seconds": cooldown,
                                     "daily_budget": daily_budget, "max_jobs_per_guild": server_jobs}.items()
                   if v is not None}
        await self._update(interaction, changes)

    @config.command(name="channels", description="Where /sora may be used (empty list = everywhere)")
    @app_commands.choices(action=ACTIONS)
    @app_commands.describe(action="What to do with the list", channel="The channel to add or remove")
    async def config_channels(self, interaction: discord.Interaction[SoraBot], action: app_commands.Choice[str],
                              channel: discord.TextChannel | None = None) -> None:
        settings = await self.db.guilds.get(_guild(interaction))
        current = list(settings.allowed_channel_ids)
        if action.value in ("add", "remove") and channel is None:
            await _private(interaction, f"Pick a channel to {action.value}.")
            return
        if action.value == "add" and channel is not None and channel.id not in current:
            current.append(channel.id)
        elif action.value == "remove" and channel is not None and channel.id in current:
            current.remove(channel.id)
        elif action.value == "clear":
            current = []
        if action.value != "list":
            try:
                settings = await self.db.guilds.update(_guild(interaction), allowed_channel_ids=tuple(current))
            except ValueError as exc:  # too many channels: say so, change nothing
                await _private(interaction, str(exc))
                return
        await _private(interaction, _text.channels_text(settings.allowed_channel_ids))

    @config.command(name="words", description="Words or phrases a prompt may not contain")
    @app_commands.choices(action=ACTIONS)
    @app_commands.describe(action="What to do with the list", words="Comma-separated words or phrases")
    async def config_words(self, interaction: discord.Interaction[SoraBot], action: app_commands.Choice[str],
                           words: app_commands.Range[str, 0, 1000] | None = None) -> None:
        settings = await self.db.guilds.get(_guild(interaction))
        current = list(settings.banned_words)
        given = [w.strip() for w in (words or "").split(",") if w.strip()]
        if action.value in ("add", "remove") and not given:
            await _private(interaction, f"Give the words to {action.value}, separated by commas.")
            return
        if action.value == "add":
            current += [w for w in given if w.casefold() not in {c.casefold() for c in current}]
        elif action.value == "remove":
            drop = {w.casefold() for w in given}
            current = [c for c in current if c.casefold() not in drop]
        elif action.value == "clear":
            current = []
        if action.value != "list":
            try:
                settings = await self.db.guilds.update(_guild(interaction), banned_words=tuple(current))
            except ValueError as exc:  # too many or too long: say so, change nothing
                await _private(interaction, str(exc))
                return
        listing = ", ".join(f"`{w}`" for w in settings.banned_words) or "none"
        await _private(interaction, f"Blocked words and phrases ({len(settings.banned_words)}): {listing}")

    async def _update(self, interaction: discord.Interaction[SoraBot], changes: Mapping[str, object]) -> None:
        if not changes:
            await _private(interaction, "Nothing to change: give at least one option.")
            return
        try:
            settings = await self.db.guilds.update(_guild(interaction), **changes)
        except ValueError as exc:
            await _private(interaction, str(exc))
            return
        await _private(interaction, "Saved.\n" + _text.settings_text(settings))

    # ---- reports -------------------------------------------------------------------------------

    @app_commands.command(name="usage", description="What this server spent: jobs, credits, dollars, top members")
    @app_commands.describe(days="How many days back (default 30)")
    async def usage(self, interaction: discord.Interaction[SoraBot], days: app_commands.Range[int, 1, 365] = 30) -> None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:  # a bounds-ignoring client
            await _private(interaction, "The number of days must be a whole number from 1 to 365.")
            return
        usage = await self.db.reports.guild_usage(_guild(interaction), days)
        text = _text.usage_text(usage, days)
        chart: discord.File | None = None
        if any(d.credits_charged or d.credits_returned for d in usage.daily):
            png = await asyncio.to_thread(
                _charts.spend_chart, [d.day.isoformat() for d in usage.daily], [d.credits_charged for d in usage.daily],
                [d.credits_returned for d in usage.daily], f"Credits per day, last {days} days",
            )
            chart = discord.File(io.BytesIO(png), filename="usage.png")
        await _private(interaction, text, chart)

    @app_commands.command(name="jobs", description="Jobs running or waiting in this server")
    async def jobs(self, interaction: discord.Interaction[SoraBot]) -> None:
        jobs = await self.db.jobs.active_for_guild(_guild(interaction))
        runner = self.bot.runner
        await _private(interaction, _text.active_jobs_text(jobs, runner.slots.position if runner else None))

    @app_commands.command(name="status", description="Whether the video API key works, and the operator's balance")
    async def status(self, interaction: discord.Interaction[SoraBot]) -> None:
        runner = self.bot.runner
        assert runner is not None
        try:
            balance = await runner.monitor.check_now()
        except VideoAPIError as exc:
            text = f"❌ The video API did not answer the bot as it should: {exc.operator_hint} (code `{exc.code}`)."
        else:
            text = (f"✅ The video API key works. Operator balance: **{balance} credits** "
                    f"(${dollars(balance or 0):,.2f}).")
        health = runner.health
        if not health.accepting:
            text += f"\n⚠️ New jobs are paused: {health.refusal}"
        elif health.last_error is not None:
            text += f"\nLast upstream error: `{health.last_error.code}` <t:{int(health.last_error_at or 0)}:R>."
        here = await self.db.jobs.running_count(_guild(interaction))  # other servers' activity is theirs
        text += f"\nJobs running in this server: {here}."
        unconfirmed = await self.db.jobs.count_unconfirmed(_guild(interaction))
        if unconfirmed:
            text += (f"\n⚠️ {unconfirmed} job(s) here were refunded because the video API never confirmed their "
                     "request: the operator may have paid for that many videos nobody received. Configuring "
                     "`CALLBACK_PUBLIC_URL` lets the bot recognise them instead.")
        await _private(interaction, text)

    # ---- data deletion -------------------------------------------------------------------------

    @data.command(name="delete-member", description="Delete everything stored about a member in this server")
    @app_commands.describe(user="The member whose balance, ledger and jobs here are erased")
    async def delete_member(self, interaction: discord.Interaction[SoraBot], user: discord.User) -> None:
        erasure = await self._erase(_guild(interaction), user.id)
        await _private(interaction, f"Deleted {user.mention}'s data here: {_text.erasure_text(erasure)}.")

    @data.command(name="delete-server", description="Delete everything stored about this server")
    @app_commands.describe(confirm="Type DELETE to confirm")
    async def delete_server(self, interaction: discord.Interaction[SoraBot], confirm: str) -> None:
        if confirm != "DELETE":
            await _private(interaction, "Nothing deleted. Type `DELETE` in the confirm option to delete this server's data.")
            return
        erasure = await self._erase(_guild(interaction), None)
        await _private(interaction, f"Deleted this server's data: {_text.erasure_text(erasure)}.")

    async def _erase(self, guild_id: int, user_id: int | None) -> Erasure:
        """Stop the runner's work on the unfinished jobs, then end and erase them in storage.

        In this order, because a job still driven would go on after its rows are gone: post the video for
        free, read the member's balance (granting starting credits again) or crash on its missing row.
        """
        runner = self.bot.runner
        jobs = await self.db.jobs.unfinished_for(guild_id, user_id)
        if runner is not None:
            for job in jobs:
                await runner.abort(job.id)
        erasure = await self.db.reports.erase(guild_id, user_id)
        known = {job.id for job in jobs}
        if runner is not None:
            for job_id in erasure.ended_job_ids:
                if job_id not in known:  # accepted between the two steps: stop it too
                    await runner.abort(job_id)
        await self._mark_stopped(jobs[:MAX_STOPPED_EDITS])
        return erasure

    async def _mark_stopped(self, jobs: list[Job]) -> None:
        """Replace the public status messages of jobs just erased (prompt and Cancel button included), so none
        goes on saying "rendering"; best effort and bounded, since Discord counts every refused request."""
        for job in jobs:
            if job.status_channel_id is None or job.status_message_id is None:
                continue
            message = self.bot.get_partial_messageable(job.status_channel_id, guild_id=job.guild_id) \
                .get_partial_message(job.status_message_id)
            try:
                await message.edit(content=STOPPED_TEXT, embeds=[], view=None)
            except discord.HTTPException as exc:
                log.info("could not mark an erased job's status message", extra={"job": job.id, "status": exc.status})
