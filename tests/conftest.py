"""Fixtures shared by every test folder: a real PostgreSQL server for the session, a clean database per test.

A clean database is one database cloned from the migrated template once per session and wiped before each
test (every table emptied, identities restarted: about 20 ms, where CREATE DATABASE … TEMPLATE costs 100-500
ms on a busy 2-core machine). If a wipe cannot get its locks within seconds (a test left a transaction
open), the test gets a brand-new clone instead.

`backend` is parametrised over "sqlite" and "postgresql"; a test (or fixture) that asks for it runs on both.
PostgreSQL tests skip with a reason when no server binaries are installed, unless SORA_REQUIRE_POSTGRES=1
(CI sets it), which makes a missing server a failure instead.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.pgserver import PgServer, create_database, drop_database, wipe

BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "sora_template"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway server for the whole session (about 2 s to start)."""
    try:
        server = PgServer.start()
    except RuntimeError as exc:
        if os.environ.get("SORA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database migrated to the latest schema once, copied for every test (CREATE DATABASE … TEMPLATE)."""
    from storage.db import Database

    async def build() -> None:
        url = await create_database(pg_server, TEMPLATE)
        db = await Database.open(url)
        await db.close()

    asyncio.run(build())
    return TEMPLATE


async def _fresh(server: PgServer, template: str) -> AsyncIterator[str]:
    name = f"test_{os.getpid()}_{next(_names)}"
    url = await create_database(server, name, template=template)
    try:
        yield url
    finally:
        await drop_database(server, name)


@pytest.fixture(scope="session")
def pg_shared(pg_server: PgServer, pg_template: str) -> dict[str, str]:
    """The session's reusable test database (a clone of the template); `url` changes if it is replaced."""
    name = f"test_{os.getpid()}_shared"
    return {"url": asyncio.run(create_database(pg_server, name, template=pg_template))}


@pytest.fixture
async def pg_url(pg_server: PgServer, pg_template: str, pg_shared: dict[str, str]) -> str:
    """A clean PostgreSQL database at the latest schema: the shared one wiped, or a new clone if it is stuck."""
    import asyncpg

    try:
        await wipe(pg_shared["url"])
    except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):
        name = f"test_{os.getpid()}_{next(_names)}"
        pg_shared["url"] = await create_database(pg_server, name, template=pg_template)
    return pg_shared["url"]


@pytest.fixture
async def pg_empty_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (no schema at all), dropped after the test."""
    async for url in _fresh(pg_server, "template0"):
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on; every test that asks runs once per backend."""
    return str(request.param)
