"""An audit: recompute balances and job settlements from the ledger and report every disagreement."""

from __future__ import annotations

import re
from decimal import Decimal

from storage.conn import Conn, fetchall

# Each check is a sentence with %-placeholders and a query returning its values, one row per problem. The
# sentence is filled in Python: printf() is SQLite's, and PostgreSQL's format() knows no %d. `{whole:…}`
# becomes the backend's test for "holds a whole number" (SQLite stores any type in any column).
_CHECKS: tuple[tuple[str, str], ...] = (
    # Amounts are whole numbers within the bounds of storage.ledger (MAX_ENTRY, MAX_BALANCE). Migration 0004
    # refuses new ones that are not; these find what an older version may have written before it.
    (
        "ledger entry %d: amount %s/%s is not a whole number within bounds",
        """
        SELECT id, CAST(delta_available AS TEXT), CAST(delta_held AS TEXT)
        FROM ledger
        WHERE NOT ({whole:delta_available}) OR NOT ({whole:delta_held})
           OR delta_available NOT BETWEEN -1000000000 AND 1000000000
           OR delta_held NOT BETWEEN -1000000000 AND 1000000000
        """,
    ),
    (
        "balance %d/%d: available=%s held=%s is not a whole number within bounds",
        """
        SELECT guild_id, user_id, CAST(available AS TEXT), CAST(held AS TEXT)
        FROM balances
        WHERE NOT ({whole:available}) OR NOT ({whole:held}) OR available + held > 1000000000
        """,
    ),
    # The cached balance equals the ledger's sums (members present on either side).
    (
        "balance %d/%d: cached available=%d held=%d, ledger says available=%d held=%d",
        """
        SELECT k.guild_id, k.user_id, COALESCE(b.available, 0), COALESCE(b.held, 0),
               COALESCE(s.available, 0), COALESCE(s.held, 0)
        FROM (SELECT guild_id, user_id FROM balances UNION SELECT guild_id, user_id FROM ledger) k
        LEFT JOIN balances b ON b.guild_id = k.guild_id AND b.user_id = k.user_id
        LEFT JOIN (SELECT guild_id, user_id, SUM(delta_available) AS available, SUM(delta_held) AS held
                   FROM ledger GROUP BY guild_id, user_id) s ON s.guild_id = k.guild_id AND s.user_id = k.user_id
        WHERE COALESCE(b.available, 0) <> COALESCE(s.available, 0) OR COALESCE(b.held, 0) <> COALESCE(s.held, 0)
        """,
    ),
    (
        "balance %d/%d is negative",
        "SELECT guild_id, user_id FROM balances WHERE available < 0 OR held < 0",
    ),
    # held equals the sum of holds not yet settled.
    (
        "balance %d/%d: held=%d but open holds sum to %d",
        """
        SELECT b.guild_id, b.user_id, b.held, COALESCE(o.open_held, 0)
        FROM balances b
        LEFT JOIN (SELECT h.guild_id, h.user_id, SUM(h.delta_held) AS open_held FROM ledger h
                   WHERE h.kind = 'hold' AND NOT EXISTS (
                       SELECT 1 FROM ledger s WHERE s.job_id = h.job_id AND s.kind IN ('charge', 'release'))
                   GROUP BY h.guild_id, h.user_id) o ON o.guild_id = b.guild_id AND o.user_id = b.user_id
        WHERE b.held <> COALESCE(o.open_held, 0)
        """,
    ),
    # Per job: one hold matching the job, at most one settlement, refunds only after a charge.
    (
        "job %s: %d holds, %d settlements, %d refunds, hold amount %d for cost %d",
        """
        SELECT j.id, c.holds, c.settlements, c.refunds, c.held, j.cost
        FROM jobs j JOIN (
            SELECT jj.id,
                   COUNT(l.id) FILTER (WHERE l.kind = 'hold') AS holds,
                   COUNT(l.id) FILTER (WHERE l.kind IN ('charge', 'release')) AS settlements,
                   COUNT(l.id) FILTER (WHERE l.kind = 'refund') AS refunds,
                   COALESCE(SUM(l.delta_held) FILTER (WHERE l.kind = 'hold'), 0) AS held
            FROM jobs jj LEFT JOIN ledger l ON l.job_id = jj.id GROUP BY jj.id
        ) c ON c.id = j.id
        WHERE c.holds <> 1 OR c.settlements > 1 OR c.refunds > 1 OR c.held <> j.cost
        """,
    ),
    (
        "job %s: refund without an earlier charge",
        """
        SELECT r.job_id FROM ledger r
        WHERE r.kind = 'refund' AND NOT EXISTS (
            SELECT 1 FROM ledger c WHERE c.job_id = r.job_id AND c.kind = 'charge' AND c.id < r.id)
        """,
    ),
    (
        "job %s: %s entry belongs to %d/%d but the job to %d/%d",
        """
        SELECT l.job_id, l.kind, l.guild_id, l.user_id, j.guild_id, j.user_id
        FROM ledger l JOIN jobs j ON j.id = l.job_id
        WHERE l.guild_id <> j.guild_id OR l.user_id <> j.user_id
        """,
    ),
    (
        "ledger entry %d names missing job %s",
        """
        SELECT l.id, l.job_id FROM ledger l
        WHERE l.job_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = l.job_id)
        """,
    ),
    # Finished jobs are settled exactly once, and the right way.
    (
        "job %s is %s but has %d settlements",
        """
        SELECT j.id, j.state,
               (SELECT COUNT(*) FROM ledger l WHERE l.job_id = j.id AND l.kind IN ('charge', 'release'))
        FROM jobs j WHERE j.state IN ('delivered', 'failed') AND
            (SELECT COUNT(*) FROM ledger l WHERE l.job_id = j.id AND l.kind IN ('charge', 'release')) <> 1
        """,
    ),
    (
        "job %s failed but was charged",
        """
        SELECT j.id FROM jobs j
        WHERE j.state = 'failed' AND EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.kind = 'charge')
        """,
    ),
    (
        "member %d/%d refilled twice in period %s",
        """
        SELECT guild_id, user_id, period_key FROM ledger
        WHERE kind = 'refill' GROUP BY guild_id, user_id, period_key HAVING COUNT(*) > 1
        """,
    ),
)


async def verify(conn: Conn) -> list[str]:
    """Run every check inside the caller's read transaction; return one sentence per problem found."""
    problems: list[str] = []
    for sentence, template in _CHECKS:
        sql = _WHOLE.sub(lambda m: conn.whole_number(m.group(1)), template)
        for row in await fetchall(conn, sql):
            problems.append(sentence % tuple(int(v) if _is_number(v) else v for v in row))
    return problems


_WHOLE = re.compile(r"\{whole:(\w+)\}")


def _is_number(value: object) -> bool:
    # PostgreSQL's SUM over BIGINT is NUMERIC (a Decimal); %d wants an int on both backends.
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
