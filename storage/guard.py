"""One process per SQLite file: an exclusive lock on a file beside the database, held while jobs are driven.

SQLite serialises writers, but two bot processes on one file would both resume and drive the same jobs (they
cannot see each other's leases die: only PostgreSQL tells a live process from a dead one). So the process that
drives jobs holds `fcntl.flock(LOCK_EX)` on `<database>.lock` for its life; the kernel drops the lock when the
process ends in any way (kill -9 included), so a restarted bot never finds a stale lock. Within one process the
lock is counted (tests and the CLI may open the same file several times), since flock locks belong to open
files, and a second open file in the same process would otherwise lock itself out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from storage.errors import DatabaseInUse

_held: dict[str, list[int]] = {}  # resolved lock path -> [fd, holders in this process]


def lock_path(database: Path) -> Path:
    """Where the lock of an SQLite database lives: beside it, named after it."""
    return database.with_name(database.name + ".lock")


def hold_sqlite(database: Path) -> Callable[[], None]:
    """Take the single-process lock of this SQLite file (or share this process's); returns its release.

    Raises:
        DatabaseInUse: another process holds it (its pid, written in the lock file, is named).
    """
    path = lock_path(database.resolve())
    key = str(path)
    held = _held.get(key)
    if held is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DatabaseInUse(str(database), pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held = _held[key] = [fd, 0]
    held[1] += 1
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _held[key]
            with contextlib.suppress(OSError):
                os.close(entry[0])  # closing the last descriptor drops the lock

    return release
