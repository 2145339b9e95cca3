"""`sora-bot generate | simulator | demo`: one video from the terminal, the local API, and both together."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import secrets
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.images import MAX_IMAGE_BYTES, ImageInfo, ImageRejected, check_image
from bot.simulator import FAULT_KINDS, Simulator, SimulatorState, run_simulator
from bot.upstream import PollSchedule, RetryPolicy, Task, VideoAPIClient, VideoAPIError, wait_for_task
from bot.upstream.errors import CreateUnconfirmed
from bot.upstream.retry import READ_FAILURES, capped

MAX_CREATES = 6  # as for the bot's jobs: each create may bill the operator

log = logging.getLogger(__name__)

DEMO_PROMPT = "A paper boat drifting down a rain-soaked street at dusk, neon reflections, gentle camera follow"
FAST_POLLS = PollSchedule(steps=(0.5, 0.5, 1.0), cap=1.0)  # a loopback simulator answers at once


class CLIError(Exception):
    """A problem the user can fix; its text is the one line they read."""


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    duration: int
    aspect_ratio: str
    image: str | None
    output: Path | None
    base_url: str
    api_key: str
    max_bytes: int = 512 * 1024 * 1024
    download_timeout: float = 600.0
    job_timeout: float = 43200.0
    time_scale: float = 1.0  # SORA_TIME_SCALE: shrinks every wait, as in the bot


class ProgressBar:
    """One redrawn line on a terminal (a line per change otherwise): state, elapsed time, progress."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream, self.width = stream or sys.stderr, width
        self.start = time.monotonic()
        self.state: str = "submitting"
        self.progress: float | None = None
        self.tty = self.stream.isatty()
        self._last = ""

    def update(self, task: Task | None = None, state: str | None = None) -> None:
        if task is not None:
            self.state = task.status
            self.progress = 100.0 if task.status == "completed" else task.progress
        if state is not None:
            self.state = state
        self.draw()

    def draw(self) -> None:
        elapsed = int(time.monotonic() - self.start)
        done = self.progress if self.progress is not None else 0.0
        filled = int(self.width * done / 100)
        pct = f"{done:3.0f}%" if self.progress is not None else "  --"
        head = f"[{'#' * filled}{'.' * (self.width - filled)}] {pct}  {self.state:<10}"
        if self.tty:
            self.stream.write(f"\r{head} {elapsed // 60}:{elapsed % 60:02d}")
        elif head != self._last:  # a log file gets one line per change, not a line per second
            self.stream.write(f"{head} {elapsed // 60}:{elapsed % 60:02d}\n")
        self._last = head
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def is_loopback(url: str) -> bool:
    """True for localhost and loopback addresses: only there can a local file be served to the API."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _read_image(session: aiohttp.ClientSession, source: str) -> tuple[bytes, bool]:
    """Return the image's bytes and whether it is a URL (local files are read from disk)."""
    if urlsplit(source).scheme in ("http", "https"):
        try:
            async with session.get(source, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status >= 400:
                    raise CLIError(f"could not fetch the image at {source}: HTTP {resp.status}")
                data = await resp.content.read(MAX_IMAGE_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CLIError(f"could not fetch the image at {source}: {exc.__class__.__name__}") from None
        return data, True
    return await asyncio.to_thread(_read_local, Path(source)), False


def _read_local(path: Path) -> bytes:
    if not path.is_file():
        raise CLIError(f"no image file at {path}")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise CLIError(f"{path} is larger than 10 MB; the first frame can be at most 10 MB")
    return path.read_bytes()


async def _serve_image(stack: AsyncExitStack, data: bytes, info: ImageInfo) -> str:
    """Serve one image from a throwaway loopback server under an unguessable path; return its URL."""
    token = secrets.token_urlsafe(16)

    async def handler(request: web.Request) -> web.Response:
        if request.match_info["token"] != token:
            raise web.HTTPNotFound
        return web.Response(body=data, content_type=info.mime)

    app = web.Application()
    app.router.add_get("/{token}/{name}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}/{token}/first-frame.{info.format.lower()}"


async def generate(req: GenerateRequest, *, schedule: PollSchedule | None = None, out: TextIO | None = None,
                   err: TextIO | None = None) -> Path:
    """Make one video end to end: check the image, submit, follow with a progress bar, download.

    Raises:
        CLIError, ImageRejected, VideoAPIError: each with a sentence for the user.
    """
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        image_url = None
        if req.image:
            data, is_url = await _read_image(session, req.image)
            info = await asyncio.to_thread(check_image, data)
            if is_url:
                image_url = req.image
            elif is_loopback(req.base_url):
                image_url = await _serve_image(stack, data, info)
            else:
                raise CLIError("--image must be an http(s) URL with this API: the video service can't read files "
                               "on this computer. Upload the image somewhere public and pass its URL.")
        scale = req.time_scale
        api = VideoAPIClient(session, base_url=req.base_url, api_key=req.api_key,
                             retry=RetryPolicy(base_delay=0.5 * scale, max_delay=8.0 * scale))
        bar = ProgressBar(err)
        bar.update(state="submitting")
        task_id = await _create(api, req, image_url, bar)
        bar.update(state="pending")
        ticker = asyncio.create_task(_tick(bar))  # the clock ticks on its own; status reads follow the schedule
        try:
            task = await wait_for_task(api, task_id, schedule=schedule or PollSchedule(), on_update=bar.update,
                                       on_read_failure=lambda exc, run: bar.update(state="retrying"),
                                       deadline=time.time() + req.job_timeout,
                                       read_failures=RetryPolicy(max_attempts=READ_FAILURES.max_attempts,
                                                                 base_delay=READ_FAILURES.base_delay * scale,
                                                                 max_delay=READ_FAILURES.max_delay * scale))
        finally:
            ticker.cancel()
            bar.finish()
        if task.status != "completed" or not task.video_urls:
            raise CLIError("the video provider couldn't make this video (prompts with prohibited content are a "
                           f"common cause; status {task.status}, {task.error_code or 'no error code'})")
        dest = req.output or Path(f"sora-{task_id}.mp4")
        size = await api.download(task.video_urls[0], dest, max_bytes=req.max_bytes, timeout=req.download_timeout)
    print(f"{dest}", file=out or sys.stdout)
    log.info("saved %s (%s bytes)", dest, size)
    return dest


async def _create(api: VideoAPIClient, req: GenerateRequest, image_url: str | None, bar: ProgressBar) -> str:
    """Send the create, again only when the answer proved no task was made (at most MAX_CREATES in all)."""
    policy = RetryPolicy(max_attempts=MAX_CREATES, base_delay=2.0 * req.time_scale, max_delay=60.0 * req.time_scale)
    failures = 0
    while True:
        try:
            return await api.create_task(prompt=req.prompt, duration=req.duration, aspect_ratio=req.aspect_ratio,
                                         image_url=image_url)
        except CreateUnconfirmed as exc:
            raise CLIError("the video service didn't answer the request, so a video may or may not have been "
                           "started (and billed); not sending it again. Check your provider's dashboard before "
                           "retrying.") from exc
        except VideoAPIError as exc:
            failures += 1
            delay = policy.delay(failures) if exc.retryable else None
            if delay is None:
                raise
            bar.update(state="retrying")
            await asyncio.sleep(max(delay, capped(exc.retry_after) or 0.0))


async def _tick(bar: ProgressBar) -> None:
    while True:
        await asyncio.sleep(1.0)
        if bar.tty:
            bar.draw()


def _run(coro: Any) -> int:
    """Run a coroutine; every known failure becomes one friendly line on stderr."""
    try:
        asyncio.run(coro)
    except VideoAPIError as exc:
        print(f"sora-bot: {exc.user_message} ({exc.code})", file=sys.stderr)
        return 1
    except ImageRejected as exc:
        print(f"sora-bot: {exc.user_message}", file=sys.stderr)
        return 2
    except CLIError as exc:
        print(f"sora-bot: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sora-bot: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"sora-bot: network error: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    except Exception as exc:  # the last line of defence: one line, the detail only in debug logs
        log.debug("unexpected error", exc_info=True)
        print(f"sora-bot: unexpected error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from bot.config import ConfigError, load_settings

    try:
        settings = load_settings(require_discord=False)
    except ConfigError as exc:
        print(f"sora-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    if not args.prompt.strip() or len(args.prompt) > 5000:
        print("sora-bot: the prompt must be 1 to 5000 characters", file=sys.stderr)
        return 2
    base = settings.sora_api_base
    req = GenerateRequest(
        prompt=args.prompt, duration=args.duration, aspect_ratio=args.aspect_ratio, image=args.image,
        output=args.output, base_url=base, api_key=settings.sora_api_key.get_secret_value(),
        max_bytes=settings.max_video_bytes, download_timeout=settings.download_timeout,
        job_timeout=settings.job_timeout, time_scale=settings.time_scale,
    )
    return _run(generate(req, schedule=PollSchedule().scaled(settings.time_scale)))


def _simulator_state(args: argparse.Namespace) -> SimulatorState:
    state = SimulatorState()
    state.configure({
        "speed": args.speed, "pending_seconds": args.pending_seconds, "processing_seconds": args.processing_seconds,
        "progress": args.progress, "fail_next": args.fail_next, "video_bytes": args.video_bytes,
        "link_expiry": args.link_expiry, "balance": args.balance, "public_url": args.public_url,
        "callback_retry_delays": [float(x) for x in args.callback_retry_delays.split(",") if x.strip()],
    })
    for spec in args.inject:
        where, _, rest = spec.partition(":")
        kind, _, rest = rest.partition(":")
        count, _, retry_after = rest.partition(":")
        state.inject(kind, where, int(count or 1), float(retry_after) if retry_after else None)
    return state


def _cmd_simulator(args: argparse.Namespace) -> int:
    try:
        state = _simulator_state(args)
    except ValueError as exc:
        print(f"sora-bot: {exc}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"Video API simulator on {url} — set SORA_API_BASE={url} and any SORA_API_KEY starting with sk-. "
              "Ctrl-C stops it.", flush=True)

    return _run(run_simulator(args.host, args.port, state, ready=ready))


async def _demo(output: Path) -> None:
    state = SimulatorState(pending_seconds=0.5, processing_seconds=3.0)
    async with Simulator(state) as sim:
        print(f"Started a local video API simulator on {sim.base_url} (no keys needed).", file=sys.stderr)
        print(f"Generating: {DEMO_PROMPT!r}", file=sys.stderr)
        req = GenerateRequest(prompt=DEMO_PROMPT, duration=4, aspect_ratio="16:9", image=None, output=output,
                              base_url=sim.base_url, api_key="sk-demo")
        path = await generate(req, schedule=FAST_POLLS, out=sys.stderr)
    print(f"Done: your demo video is at {path.absolute()}", file=sys.stderr)
    print(path.absolute())


def _cmd_demo(args: argparse.Namespace) -> int:
    return _run(_demo(args.output or Path("sora-demo.mp4")))


def register(subparsers: Any) -> None:
    """Add the generate, simulator and demo verbs to the main parser."""
    gen = subparsers.add_parser("generate", help="make one video from the terminal, with a progress bar")
    gen.add_argument("prompt", help="what the video shows (1-5000 characters)")
    gen.add_argument("--duration", type=int, choices=(4, 8, 12), default=4, help="seconds (default 4)")
    gen.add_argument("--aspect-ratio", choices=("16:9", "9:16"), default="16:9", help="default 16:9")
    gen.add_argument("--image", metavar="PATH_OR_URL", help="first frame: JPEG, PNG or WebP")
    gen.add_argument("-o", "--output", type=Path, help="where to save (default sora-<taskid>.mp4)")
    gen.set_defaults(func=_cmd_generate)

    sim = subparsers.add_parser("simulator", help="run a local stand-in for the video API")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8000)
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--pending-seconds", type=float, default=2.0)
    sim.add_argument("--processing-seconds", type=float, default=20.0, help="how long each task processes")
    sim.add_argument("--progress", choices=("number", "null"), default="number")
    sim.add_argument("--fail-next", type=int, default=0, help="the next N tasks fail (task.failed)")
    sim.add_argument("--video-bytes", type=int, default=None, help="pad served videos to N bytes")
    sim.add_argument("--link-expiry", type=float, default=24 * 3600.0, help="seconds a video link stays valid")
    sim.add_argument("--balance", type=int, default=1_000_000, help="starting credits")
    sim.add_argument("--public-url", default=None, help="base of output URLs (default: the address used)")
    sim.add_argument("--callback-retry-delays", default="0,180,600", help="seconds between callback retries")
    sim.add_argument("--inject", action="append", default=[], metavar="WHERE:KIND[:COUNT[:RETRY_AFTER]]",
                     help=f"misbehave; WHERE in create|poll|credits|video|any, KIND in {'|'.join(FAULT_KINDS)}")
    sim.set_defaults(func=_cmd_simulator)

    demo = subparsers.add_parser("demo", help="the whole pipeline against a local simulator, no keys needed")
    demo.add_argument("-o", "--output", type=Path, help="where to save (default sora-demo.mp4)")
    demo.set_defaults(func=_cmd_demo)
