"""A throwaway PostgreSQL server in a temp folder, for the tests and the benchmarks.

`initdb` + `pg_ctl` from the server binaries on PATH or under /usr/lib/postgresql/N/bin (Debian's
`postgresql` package). PostgreSQL refuses to run as root, and CI runs as root: then every server command
runs as the `postgres` user (or `nobody`) through `runuser`, in a folder owned by that user. The server
listens on 127.0.0.1 on a free port, with its unix socket inside the folder, trusts local connections (it is
reachable only from this machine and lives for one test session), and is stopped and deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, newest Debian version first; None if PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


def _run_as() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) for running server commands as a non-root user when we are root."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running server: `url(name)` is a database on it, reachable as the trusted superuser."""

    root: Path
    bin_dir: Path
    port: int
    prefix: list[str]
    options: str = ""  # what pg_ctl start was given, so halt() + resume() bring back the same server

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, str(self.bin_dir / tool), *args], capture_output=True, text=True, timeout=timeout,
            check=False, cwd=self.root,
        )

    @classmethod
    def start(cls, *, durable: bool = False, bin_dir: Path | None = None) -> PgServer:
        """initdb into a new temp folder and start the server; wait until it accepts connections.

        Args:
            durable: keep fsync on (benchmarks measure real commits); tests turn it off for speed — killing
                a client with SIGKILL never needs it, only a power cut would.
        Raises:
            RuntimeError: no server binaries, or the server would not start (its log is in the message).
        """
        bin_dir = bin_dir or find_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
        prefix, uid, gid = _run_as()
        root = Path(tempfile.mkdtemp(prefix="sora-pg-"))
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        server = cls(root=root, bin_dir=bin_dir, port=free_port(), prefix=prefix)
        try:
            init = server._cmd("initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                               "--no-locale", "--no-sync")
            if init.returncode != 0:
                raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
            options = [f"-p {server.port}", "-c listen_addresses=127.0.0.1", f"-k {root}", "-c max_connections=300"]
            if not durable:
                options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
            for attempt in range(3):  # the port was free a moment ago; retry with another if it was taken
                started = server._cmd("pg_ctl", "-D", str(server.data), "-l", str(root / "server.log"), "-w",
                                      "-t", "60", "-o", " ".join(options), "start", timeout=90)
                if started.returncode == 0:
                    server.options = " ".join(options)
                    break
                if attempt == 2:
                    log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
                    raise RuntimeError(f"pg_ctl start failed: {started.stderr[-1000:]} {log}")
                server.port = free_port()
                options[0] = f"-p {server.port}"
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def halt(self) -> None:
        """Stop the server but keep its data: the database "goes away" until resume()."""
        self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", timeout=60)

    def resume(self) -> None:
        """Start a halted server again, on the same port with the same data."""
        started = self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                            "-o", self.options, "start", timeout=90)
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr[-1000:]}")

    def stop(self) -> None:
        """Stop at once (nothing here needs a clean shutdown) and delete the folder."""
        with contextlib.suppress(Exception):
            self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PgServer]:
    """A server for the length of a block."""
    server = PgServer.start(durable=durable)
    try:
        yield server
    finally:
        server.stop()


async def create_database(server: PgServer, name: str, *, template: str = "template0") -> str:
    """CREATE DATABASE `name` from `template` and return its URL (names are ours: letters, digits, _)."""
    import asyncpg

    assert name.replace("_", "").isalnum() and template.replace("_", "").isalnum()
    conn = await asyncpg.connect(server.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return server.url(name)


async def drop_database(server: PgServer, name: str) -> None:
    """DROP DATABASE `name`, disconnecting whoever is still on it."""
    import asyncpg

    assert name.replace("_", "").isalnum()
    conn = await asyncpg.connect(server.url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def wipe(url: str) -> None:
    """Empty every table but schema_version and restart identities; triggers are off for the session.

    Raises:
        asyncpg.LockNotAvailableError: someone still holds a lock on a table after 5 s.
    """
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET lock_timeout = '5s'; SET session_replication_role = replica")
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version'")]
        identities = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND is_identity = 'YES'")
        async with conn.transaction():
            for table in tables:
                await conn.execute(f'DELETE FROM "{table}"')
            for row in identities:
                await conn.execute(f'ALTER TABLE "{row["table_name"]}" ALTER COLUMN "{row["column_name"]}" RESTART')
    finally:
        await conn.close()
