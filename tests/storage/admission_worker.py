"""Child process for test_concurrency.py: fire N admissions at once from this process's own pool.

Usage: python -m tests.storage.admission_worker TARGET N USER GO_FILE
Waits until GO_FILE exists (so every process starts at the same moment), then prints one JSON line:
{"accepted": …, "refused": {"NotEnoughCredits": …}, "errors": […]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

from storage.db import Database
from storage.errors import QuotaRefused
from storage.jobs import NewJob

GUILD = 1001


async def main(target: str, count: int, user: int, go: Path) -> None:
    db = await Database.open(target)
    try:
        deadline = time.monotonic() + 30
        while not go.exists():  # bounded: the parent creates the file within seconds
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            await asyncio.sleep(0.01)
        results = await asyncio.gather(
            *(db.jobs.create_with_hold(NewJob(GUILD, 500, user, "race", 4, 100)) for _ in range(count)),
            return_exceptions=True,
        )
    finally:
        await db.close()
    refused = Counter(type(r).__name__ for r in results if isinstance(r, QuotaRefused))
    errors = [repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaRefused)]
    accepted = sum(1 for r in results if not isinstance(r, BaseException))
    print(json.dumps({"accepted": accepted, "refused": dict(refused), "errors": errors}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
