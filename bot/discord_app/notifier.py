"""The job runner's voice on Discord: status messages, delivery with fallbacks, and the upload limit.

Discord counts every refused request (401, 403, 429) toward 10,000 per 10 minutes, past which the bot's IP
is banned for every server. So a place that refused a job for good (a channel answering 403 or 404, a dead
followup token, closed DMs) is remembered and not asked again for that job, and where discord.py's gateway
cache already shows that the bot lacks a permission, nothing is sent at all. Discord's own trouble (5xx,
network errors, a rate limit not waited out) is not a refusal: it ends a delivery in `DeliveryDelayed` so
the runner tries again while the video's link lives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.discord_app import render
from bot.discord_app.items import job_buttons, reroll_id
from bot.jobs.eta import QueueEstimate
from bot.jobs.notifier import Delivery, DeliveryDelayed, DeliveryHow, StatusUpdate, TooLarge, Undeliverable
from storage.models import Job

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_MARGIN = 30.0  # seconds before expiry when the interaction token is no longer trusted
STOP_EDITING = {30046, 10008, 10003, 50001, 50013}  # edit cap, unknown message/channel, no access
REFUSED_FOR_GOOD = {401, 403, 404}  # the place will not take this job's messages: do not ask again
HISTORY_LIMIT = 500  # messages read (newest first, 5 requests at most) looking for a post made before a crash
REMEMBERED_JOBS = 10_000  # jobs whose refusals are kept (oldest forgotten first): bounded memory
#: What Discord itself may get over; anything else is a bug of ours and propagates.
DISCORD_TROUBLE = (discord.HTTPException, discord.RateLimited, aiohttp.ClientError, TimeoutError, OSError)


def _code(exc: BaseException) -> int:
    return getattr(exc, "code", 0) or 0


def _status(exc: BaseException) -> int:
    return getattr(exc, "status", 0) or 0


def transient(exc: BaseException) -> bool:
    """Discord's trouble that may pass: a 5xx, a 429 discord.py did not wait out, a network error or time-out."""
    if isinstance(exc, discord.RateLimited):
        return True
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, aiohttp.ClientError | TimeoutError | OSError)


def nonce(kind: str, job_id: str) -> str:
    """A message nonce (at most 25 characters) derived from the job: the same post sent again within minutes
    (a restart between posting and recording, a retry after a lost answer) returns the first message, as
    Discord does for `enforce_nonce`, which discord.py sets whenever a nonce is passed. `kind` keeps the
    status message's nonce apart from the delivery's in the same channel."""
    bits = int(hashlib.sha256(f"{kind}:{job_id}".encode()).hexdigest()[:30], 16)  # 120 bits
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while bits:
        bits, digit = divmod(bits, 36)
        out = digits[digit] + out
    return f"{kind[0]}{out or '0'}"  # 120 bits take at most 24 base-36 digits


class Refusals:
    """Per job, the places that refused it for good ("channel:ID", "dm:USER", "followup", "edit", "history:ID").

    Bounded: the oldest jobs are forgotten first, long after they ended.
    """

    def __init__(self, max_jobs: int = REMEMBERED_JOBS) -> None:
        self._by_job: OrderedDict[str, set[str]] = OrderedDict()
        self.max_jobs = max_jobs

    def add(self, job_id: str, place: str) -> None:
        self._by_job.setdefault(job_id, set()).add(place)
        self._by_job.move_to_end(job_id)
        while len(self._by_job) > self.max_jobs:
            self._by_job.popitem(last=False)

    def __call__(self, job_id: str, place: str) -> bool:
        return place in self._by_job.get(job_id, ())


class _Outcome:
    """What the failed delivery paths had in common: whether any failure may pass, and Discord's hint."""

    def __init__(self) -> None:
        self.transient = False
        self.retry_after: float | None = None

    def note(self, exc: BaseException) -> None:
        self.transient = True
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float) and hint > 0:
            self.retry_after = max(self.retry_after or 0.0, float(hint))


@dataclass(frozen=True, slots=True)
class _Post:
    """One delivery message, sent the same way wherever it goes; the file is opened afresh for each try."""

    text: str
    mentions: discord.AllowedMentions
    view: discord.ui.View
    video: Path | None
    filename: str
    nonce: str

    def file(self) -> discord.File:
        return discord.File(self.video, filename=self.filename) if self.video else discord.utils.MISSING


@dataclass(frozen=True, slots=True)
class _Target:
    """A place a delivery may go: its refusal key, how it is reported, and how to post there (→ a link)."""

    place: str
    how: DeliveryHow
    send: Callable[[_Post], Awaitable[str]]


class DiscordNotifier:
    """Implements `bot.jobs.notifier.Notifier` with the bot's own messages, falling back sensibly."""

    def __init__(self, bot: SoraBot, clock: Callable[[], float] = time.time) -> None:
        self.bot = bot
        self.refused = Refusals()
        self.clock = clock  # unix time, as Discord's clock for interaction tokens (a test gives Discord's own)
        self.queue = QueueEstimate(bot.db, bot.db.now, self._max_running)  # the clock job times are stored by

    def _max_running(self) -> int:
        return self.bot.runner.settings.max_running if self.bot.runner is not None else 1

    # ---- what the gateway cache already knows --------------------------------------------------

    def _cache_forbids(self, channel_id: int, guild_id: int | None, *needed: str) -> bool:
        """Whether discord.py's cache (guild channel and the bot's member, kept current by the gateway) shows
        the bot lacks View Channel or one of `needed` there. Unknown to the cache: False (try once)."""
        guild = self.bot.get_guild(guild_id) if guild_id else None
        me = guild.me if guild is not None else None
        channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
        if me is None or channel is None:
            return False
        try:
            perms = channel.permissions_for(me)
        except discord.ClientException:  # a thread whose parent is not cached
            return False
        thread = isinstance(channel, discord.Thread)
        names = ["view_channel", *("send_messages_in_threads" if thread and n == "send_messages" else n
                                   for n in needed)]
        missing = [n for n in names if not getattr(perms, n, False)]
        if missing:
            log.debug("skipping a channel the bot may not use",
                     extra={"channel": channel_id, "missing": ",".join(missing)})
        return bool(missing)

    def _may_use(self, job: Job, channel_id: int, *needed: str) -> bool:
        return (not self.refused(job.id, f"channel:{channel_id}")
                and not self._cache_forbids(channel_id, job.guild_id, *needed))

    def _note_failure(self, job: Job, place: str, exc: BaseException, outcome: _Outcome | None = None, *,
                      sizes: bool = False) -> None:
        """Sort a failed request: too large (raised when `sizes`), Discord's trouble (noted in `outcome`), or a
        refusal (remembered for the job)."""
        if sizes and isinstance(exc, discord.HTTPException) and (exc.status == 413 or _code(exc) == 40005):
            raise TooLarge() from exc
        extra = {"job": job.id, "place": place.partition(":")[0], "status": _status(exc), "code": _code(exc),
                 "error": type(exc).__name__}
        if transient(exc):
            if outcome is not None:
                outcome.note(exc)
            log.warning("Discord trouble; may pass", extra=extra)
        elif _status(exc) in REFUSED_FOR_GOOD:
            self.refused.add(job.id, place)
            log.info("refused; not asking again for this job", extra=extra)
        else:
            log.warning("request refused", extra=extra)

    # ---- status --------------------------------------------------------------------------------

    async def show_status(self, job: Job, update: StatusUpdate) -> None:
        """Create or edit the status message; a job waiting in the queue carries a Cancel button, and every
        other state's edit sends no components, so the button goes as soon as the job is submitted."""
        if update.state == "queued" and update.queue_position and not update.final:
            update = dataclasses.replace(update, eta=await self.queue.start_of(job, update.queue_position))
        text = render.status_text(user_id=job.user_id, prompt=job.prompt, duration=job.duration,
                                   aspect_ratio=job.aspect_ratio, credits=job.cost, update=update)
        fresh = await self.bot.db.jobs.get(job.id) or job
        if fresh.is_finished and not update.final:  # ended meanwhile (cancelled): its status says so already
            return
        view = job_buttons(job.id, "cancel") if update.state == "queued" and not update.final else None
        if fresh.status_message_id is None:
            await self._create_status(fresh, text, view)
            return
        channel_id = fresh.status_channel_id or fresh.channel_id
        if self.refused(job.id, "edit") or not self._may_use(fresh, channel_id):
            return
        channel = self.bot.get_partial_messageable(channel_id, guild_id=fresh.guild_id)
        try:
            await channel.get_partial_message(fresh.status_message_id).edit(content=text, view=view)
        except DISCORD_TROUBLE as exc:
            if _code(exc) in STOP_EDITING:
                self.refused.add(job.id, "edit")
            if _code(exc) == 10008:  # the status message was deleted: the channel itself is fine
                log.info("status message gone; not editing it again", extra={"job": job.id})
                return
            self._note_failure(fresh, f"channel:{channel_id}", exc)

    async def _create_status(self, job: Job, text: str, view: discord.ui.View | None) -> None:
        if not self._may_use(job, job.channel_id, "send_messages"):
            return
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.send(text, nonce=nonce("status", job.id), view=view or discord.utils.MISSING)
        except DISCORD_TROUBLE as exc:
            self._note_failure(job, f"channel:{job.channel_id}", exc)
            return
        await self.bot.db.jobs.set_status_message(job.id, message.channel.id, message.id)

    def _status_visible(self, job: Job) -> bool:
        """Whether the job's public status message exists and can still be edited (so it tells the member)."""
        channel_id = job.status_channel_id or job.channel_id
        return (job.status_message_id is not None and not self.refused(job.id, "edit")
                and self._may_use(job, channel_id))

    # ---- delivery ------------------------------------------------------------------------------

    async def upload_limit(self, job: Job) -> int:
        if job.upload_limit:
            return job.upload_limit
        guild = self.bot.get_guild(job.guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver_file(self, job: Job, video: Path) -> Delivery:
        return await self._post(job, None, video)

    async def deliver_link(self, job: Job, url: str, expires_at: float | None) -> Delivery:
        return await self._post(job, (url, expires_at), None)

    async def _post(self, job: Job, link: tuple[str, float | None] | None, video: Path | None) -> Delivery:
        """Followup while the token lives, else the channel, else a DM; places that refused are skipped."""
        # The card is public: it names the cost, never the member's balance (that is theirs: /sora balance).
        text = render.result_text(
            user_id=job.user_id, prompt=job.prompt, duration=job.duration, aspect_ratio=job.aspect_ratio,
            credits=job.cost, balance=None, link=link[0] if link else None,
            link_expires_at=link[1] if link else None,
        )
        view = job_buttons(job.id, "reroll", "edit", "extend")
        post = _Post(text, discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(job.user_id)]),
                     view, video, f"sora-{job.id[:8]}.mp4", nonce("delivery", job.id))
        outcome = _Outcome()
        for target in self._targets(job, ("send_messages", "attach_files") if video else ("send_messages",)):
            try:
                return Delivery(await target.send(post), target.how)
            except DISCORD_TROUBLE as exc:
                self._note_failure(job, target.place, exc, outcome, sizes=True)
        if outcome.transient:
            raise DeliveryDelayed(outcome.retry_after)
        log.warning("nowhere to deliver", extra={"job": job.id})
        raise Undeliverable(job.id)

    def _targets(self, job: Job, needed: tuple[str, ...]) -> list[_Target]:
        """Where a delivery may go, in order, leaving out the places that refused this job or that the cache
        shows the bot may not use."""
        targets: list[_Target] = []
        webhook = self._webhook(job)
        if webhook is not None:
            async def followup(post: _Post) -> str:
                message = await webhook.send(post.text, wait=True, file=post.file(), allowed_mentions=post.mentions,
                                             view=post.view)
                return self._link(job, message)

            targets.append(_Target("followup", "interaction", followup))
        if self._may_use(job, job.channel_id, *needed):
            async def in_channel(post: _Post) -> str:
                channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
                message = await channel.send(post.text, nonce=post.nonce, file=post.file(),
                                             allowed_mentions=post.mentions, view=post.view)
                return self._link(job, message)

            targets.append(_Target(f"channel:{job.channel_id}", "channel", in_channel))
        if not self.refused(job.id, f"dm:{job.user_id}"):
            async def by_dm(post: _Post) -> str:
                user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
                message = await user.send(post.text, nonce=post.nonce, file=post.file(),
                                          allowed_mentions=post.mentions, view=post.view)
                return message.jump_url

            targets.append(_Target(f"dm:{job.user_id}", "dm", by_dm))
        return targets

    @staticmethod
    def _link(job: Job, message: discord.Message) -> str:
        """A jump link that opens in the server (a webhook message's own jump_url points at @me)."""
        return f"https://discord.com/channels/{job.guild_id}/{message.channel.id}/{message.id}"

    def _webhook(self, job: Job) -> discord.Webhook | None:
        """The interaction's followup webhook while its token is still alive (and not refused), else None."""
        if not job.interaction_usable(self.clock(), TOKEN_MARGIN) or not job.interaction_application_id:
            return None
        if self.refused(job.id, "followup"):
            return None
        assert job.interaction_token is not None
        # An application webhook (type 3), as discord.py builds `Interaction.followup`: a plain partial webhook
        # refuses ephemeral messages, which silenced every private failure notice.
        data = {"id": job.interaction_application_id, "type": 3, "token": job.interaction_token}
        return discord.Webhook.from_state(data=data, state=self.bot._connection)  # type: ignore[arg-type]

    async def find_delivery(self, job: Job) -> Delivery | None:
        """Look for our post carrying the job's Re-roll button, newest message first, back to the job's start.

        Newest first because the post came late in the job: in a busy channel the oldest messages after the
        job began are other people's. Bounded by HISTORY_LIMIT; a post deeper than that (or in a channel we
        may not read) is caught by the delivery's nonce if it was made within Discord's nonce window.
        """
        wanted = reroll_id(job.id)
        if self.refused(job.id, f"history:{job.channel_id}") or not self._may_use(
                job, job.channel_id, "read_message_history"):
            return None
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        since = discord.Object(discord.utils.time_snowflake(datetime.fromtimestamp(job.created_at, UTC)))
        me = getattr(self.bot.user, "id", None)
        try:
            async for message in channel.history(limit=HISTORY_LIMIT, after=since, oldest_first=False):
                if message.author.id != me:
                    continue
                for row in message.components:
                    for child in getattr(row, "children", ()):
                        if getattr(child, "custom_id", None) == wanted:
                            return Delivery(self._link(job, message), "channel")
        except DISCORD_TROUBLE as exc:
            if _status(exc) == 403:  # may not read history; posting may still work
                self.refused.add(job.id, f"history:{job.channel_id}")
            else:
                self._note_failure(job, f"channel:{job.channel_id}", exc)
            log.info("cannot read channel history", extra={"job": job.id, "status": _status(exc), "code": _code(exc)})
        return None

    async def announce_failure(self, job: Job, message: str) -> None:
        """Tell the requester privately: by followup while the token lives, else by DM when the channel's
        status message cannot tell them (never posted, or the channel refused the bot). Never raises."""
        text = render.failure_text(message)
        webhook = self._webhook(job)
        if webhook is not None:
            try:
                await webhook.send(text, ephemeral=True)
                return
            except DISCORD_TROUBLE as exc:
                self._note_failure(job, "followup", exc)
        fresh = await self.bot.db.jobs.get(job.id) or job
        if self._status_visible(fresh) or self.refused(job.id, f"dm:{job.user_id}"):
            return
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            await user.send(text, allowed_mentions=discord.AllowedMentions.none())
        except DISCORD_TROUBLE as exc:
            self._note_failure(job, f"dm:{job.user_id}", exc)
