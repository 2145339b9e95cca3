"""Where Extend finds the video whose last frame starts the next one, and how that frame reaches Discord.

In order: the file on disk if the bot still has it, else a fresh download of the video service's result while
its link lives (24 hours), else the video file of the post the button is on (on Discord's media hosts, only
those). The frame is then posted to Discord (as the private confirmation's attachment), so the upstream is
handed a Discord URL that the usual first-frame path reads and checks, like any member's picture.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.frames import FrameError, last_frame
from bot.images import ImageRejected, MediaOrigins
from bot.upstream.errors import DownloadError
from cogs.sora._flow import Refusal
from storage.models import Job

if TYPE_CHECKING:
    from bot.discord_app.client import SoraBot

log = logging.getLogger(__name__)

SOURCE_GONE = ("That video is no longer available to take its last frame from: the video service's link "
               "expired (it keeps videos for 24 hours) and the post no longer has its file. Nothing was charged.")
NO_FRAME = "I couldn't take a frame from that video. Nothing was charged."
VIDEO_BYTES = 200 * 1024 * 1024  # the most Extend downloads to read one frame (Discord posts are far smaller)
DOWNLOAD_TIMEOUT = 120.0


def post_video_url(message: discord.Message | None) -> str | None:
    """The URL of the video file on the pressed post, if it still carries one."""
    for attachment in message.attachments if message is not None else ():
        kind = (attachment.content_type or "").split(";")[0]
        if kind.startswith("video/") or attachment.filename.lower().endswith(".mp4"):
            return attachment.url
    return None


def has_source(bot: SoraBot, job: Job, message: discord.Message | None) -> bool:
    """Whether some copy of the video may still be read (checked before the form opens: no download)."""
    assert bot.runner is not None
    local = bot.runner.settings.video_dir / f"{job.id}.mp4"
    link_alive = bool(job.result_url) and (job.result_expires_at or 0) > bot.clock()
    return local.is_file() or link_alive or post_video_url(message) is not None


async def frame_of(bot: SoraBot, job: Job, message: discord.Message | None) -> bytes:
    """The last frame of the job's video as PNG bytes (checked as a first frame), from the first copy that reads.

    Raises:
        Refusal: no copy can be read any more (SOURCE_GONE), or none yields a usable frame (NO_FRAME).
    """
    assert bot.runner is not None
    local = bot.runner.settings.video_dir / f"{job.id}.mp4"
    if local.is_file():
        try:
            return await last_frame(local)
        except (FrameError, ImageRejected):
            log.info("no frame from the file on disk", extra={"job": job.id})
    urls: list[str] = []
    if job.result_url and (job.result_expires_at or 0) > bot.clock():
        urls.append(job.result_url)
    posted = post_video_url(message)
    if posted is not None:
        try:
            urls.append(MediaOrigins.discord(bot.settings.discord_api_base).check(posted))
        except ImageRejected:
            log.info("the post's file is not on Discord's media hosts", extra={"job": job.id})
    if not urls:
        raise Refusal(SOURCE_GONE)
    read_any = False
    with tempfile.TemporaryDirectory(prefix="sora-extend-") as tmp:
        for index, url in enumerate(urls):
            path = Path(tmp) / f"source-{index}.mp4"
            try:
                await bot.api.download(url, path, max_bytes=VIDEO_BYTES, timeout=DOWNLOAD_TIMEOUT)
            except DownloadError as exc:
                log.info("Extend could not read a copy of the video", extra={"job": job.id, "reason": exc.reason})
                continue
            read_any = True
            try:
                return await last_frame(path)
            except (FrameError, ImageRejected):
                log.info("no frame from a downloaded copy", extra={"job": job.id})
    raise Refusal(NO_FRAME if read_any else SOURCE_GONE)
