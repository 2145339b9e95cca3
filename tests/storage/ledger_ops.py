"""Settling a hold without moving its job: what the ledger tests and the ledger benchmark exercise directly.

The bot itself settles only through `Jobs.finish_delivered` / `finish_failed` (state and money together), so
these live with the tests, not in storage's public API; they use storage's own `settle_in`, in one write.
"""

from __future__ import annotations

from storage.db import Database
from storage.ledger import settle_in


async def settle(db: Database, job_id: str) -> bool:
    """Turn the job's hold into a charge; True if this call did it (LookupError: no hold)."""
    async with db.write() as conn:
        return await settle_in(conn, db.now(), job_id, "charge", reason="video delivered")


async def release(db: Database, job_id: str, reason: str) -> bool:
    """Give the job's held credits back; True if this call did it (LookupError: no hold)."""
    async with db.write() as conn:
        return await settle_in(conn, db.now(), job_id, "release", reason=reason)
