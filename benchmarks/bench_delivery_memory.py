"""Target: delivering a 100 MB video raises the bot process's peak memory by less than 20 MB.

The real bot runs as a child process (`benchmarks/botproc.py`) against the local Discord and the simulator.
The simulator pads the MP4 it serves to exactly N bytes; the server's upload limit is raised above N so the
bot downloads it and posts it as a file (no re-encode). For each size a fresh bot delivers one video; its
peak resident memory is read from /proc/<pid>/status (VmHWM) once the file has arrived, and its resident
memory is also sampled every 20 ms with psutil. Only the bot process is measured: the local Discord, which
keeps the whole upload, lives in the benchmark's process.

    python benchmarks/bench_delivery_memory.py [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_MB = 20.0
MB = 1_000_000


async def deliver_once(size: int) -> dict:
    import psutil

    with common.workdir("memory") as tmp:
        async with common.world(tmp, video_bytes=size) as w:
            w.fake.set_filesize_limit(w.guild.id, size + 64 * 1024 * 1024)
            await common.prepare_guilds(tmp / "bot.db", [w.guild.id])
            bot = common.BotProcess(w.env(), tmp)
            await bot.start(w.fake)
            proc = psutil.Process(bot.pid)
            samples: list[int] = []
            stop = asyncio.Event()

            async def sample() -> None:
                while not stop.is_set():
                    with contextlib.suppress(psutil.Error):
                        samples.append(proc.memory_info().rss)
                    await asyncio.sleep(0.02)

            sampler = asyncio.create_task(sample())
            try:
                await asyncio.sleep(0.5)
                before_kb = bot.vm_hwm_kb() or 0
                rss_before = proc.memory_info().rss
                started = time.perf_counter()
                await w.generate()

                def delivered() -> object:
                    return next((m for m in w.fake.channel_messages(w.channel.id) if m.attachments), None)

                message = await w.fake.wait_for(delivered, timeout=300, what="video posted")
                elapsed = time.perf_counter() - started
                await asyncio.sleep(0.3)
                peak_kb = bot.vm_hwm_kb() or 0
            finally:
                stop.set()
                await sampler
                await bot.stop()
            attachment = message.attachments[0]
    return {
        "video_bytes": size, "posted_bytes": attachment.size, "seconds": round(elapsed, 2),
        "hwm_before_mb": round(before_kb * 1024 / MB, 1), "hwm_peak_mb": round(peak_kb * 1024 / MB, 1),
        "rss_before_mb": round(rss_before / MB, 1), "rss_sampled_max_mb": round(max(samples, default=0) / MB, 1),
    }


async def run(quick: bool) -> dict:
    sizes = (1 * MB, 20 * MB) if quick else (1 * MB, 100 * MB)
    rows = [await deliver_once(size) for size in sizes]
    small, large = rows[0], rows[-1]
    extra = round(large["hwm_peak_mb"] - small["hwm_peak_mb"], 1)
    return {"rows": rows, "extra_peak_mb": extra, "compared": [small["video_bytes"], large["video_bytes"]],
            "target_extra_mb": TARGET_MB, "target_met": extra < TARGET_MB and large["posted_bytes"] == large["video_bytes"]}


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__ or "", argv)
    common.quiet_logs()
    r = asyncio.run(run(args.quick))
    print(common.table("Bot process memory while downloading and posting one video (MB = 10^6 bytes)",
                       ["video (MB)", "posted (MB)", "seconds", "peak before", "peak after (VmHWM)",
                        "RSS sampled max"],
                       [[x["video_bytes"] / MB, x["posted_bytes"] / MB, x["seconds"], x["hwm_before_mb"],
                         x["hwm_peak_mb"], x["rss_sampled_max_mb"]] for x in r["rows"]]))
    a, b = (v / MB for v in r["compared"])
    print(f"peak with {b:.0f} MB minus peak with {a:.0f} MB: {r['extra_peak_mb']} MB "
          f"(target < {TARGET_MB:.0f} MB for 100 MB) -> {'met' if r['target_met'] else 'MISSED'}")
    common.emit("delivery_memory", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
