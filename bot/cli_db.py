"""`sora-bot db upgrade` and `sora-bot db copy --from PATH`: the database verbs.

They read only DATABASE_URL / DATABASE_PATH (no Discord token or API key needed), print one line per step,
and exit 0 on success, 1 when the database refused (or the copy did not add up), 2 for a configuration
mistake. The copy's progress bar is tqdm's, on stderr: a well-kept, dependency-free library that draws a
redrawn bar on a terminal and falls back to plain periodic lines when stderr is a file or a CI log.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.config import ConfigError, load_database_target, redact_database_url
from bot.logs import configure_logging

if TYPE_CHECKING:
    from storage.db import Database

PROGRESS_MIN_ROWS = 10_000  # below this a copy takes a moment and a bar would only flash


def register(sub: Any) -> None:
    """Add `db upgrade` and `db copy` to the top-level parser's subcommands."""
    db = sub.add_parser("db", help="database maintenance: upgrade the schema, copy SQLite into PostgreSQL")
    verbs = db.add_subparsers(dest="db_command", metavar="VERB")
    verbs.required = True
    upgrade = verbs.add_parser("upgrade", help="apply the migrations this version has (DATABASE_URL or DATABASE_PATH)")
    upgrade.set_defaults(func=_cmd_upgrade)
    copy = verbs.add_parser("copy", help="copy an SQLite database into DATABASE_URL's empty PostgreSQL database")
    copy.add_argument("--from", dest="source", required=True, type=Path, metavar="PATH",
                      help="the SQLite file to copy (the bot using it should be stopped)")
    copy.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                      help=f"progress bar on stderr (auto: for {PROGRESS_MIN_ROWS:,} rows or more)")
    copy.set_defaults(func=_cmd_copy)


def _target() -> tuple[str | Path, str]:
    url, path = load_database_target()
    secrets = [] if url is None else [url.get_secret_value(), urlsplit(url.get_secret_value()).password or ""]
    configure_logging("WARNING", "text", [s for s in secrets if s])
    if url is None:
        return path, str(path)
    return url.get_secret_value(), redact_database_url(url.get_secret_value())


def _cmd_upgrade(args: argparse.Namespace) -> int:
    target, label = _target()
    return asyncio.run(_upgrade(target, label))


async def _open(target: str | Path, label: str) -> Database | None:
    """Open (and migrate) a database, or say in one line why not (the label never holds a password)."""
    import asyncpg

    from storage.db import Database
    from storage.errors import SchemaTooNew

    try:
        return await Database.open(target)
    except SchemaTooNew as exc:
        print(f"sora-bot: {label}: {exc}", file=sys.stderr)
    except (OSError, ConnectionError, asyncpg.PostgresError) as exc:
        print(f"sora-bot: the database {label} could not be opened: {exc.__class__.__name__}: {exc}",
              file=sys.stderr)
    return None


async def _upgrade(target: str | Path, label: str) -> int:
    from storage.migrate import latest_version

    db = await _open(target, label)
    if db is None:
        return 1
    await db.close()
    print(f"sora-bot: database {label} is at schema version {latest_version()} (up to date).")
    return 0


def _cmd_copy(args: argparse.Namespace) -> int:
    url, _ = load_database_target()
    if url is None:
        raise ConfigError("DATABASE_URL", "is not set: db copy writes into the PostgreSQL database it names")
    source: Path = args.source
    if not source.is_file():
        print(f"sora-bot: {source} is not a file: --from takes the SQLite database to copy", file=sys.stderr)
        return 2
    target, label = _target()
    return asyncio.run(_copy(source, str(target), label, args.progress))


async def _copy(source_path: Path, url: str, label: str, mode: str) -> int:
    from tqdm import tqdm

    from storage.copy import TABLES, CopyRefused, copy_database

    source = await _open(source_path, str(source_path))
    if source is None:
        return 1
    try:
        target = await _open(url, label)
        if target is None:
            return 1
        try:
            total = 0
            for table in TABLES:
                row = await source.fetchone(f"SELECT COUNT(*) AS n FROM {table}")
                total += int(row["n"]) if row is not None else 0
            show = mode == "always" or (mode == "auto" and total >= PROGRESS_MIN_ROWS)
            bar = tqdm(total=total, unit="rows", file=sys.stderr, disable=not show, mininterval=0.5,
                       dynamic_ncols=True)
            seen: dict[str, int] = {}

            def progress(table: str, done: int, _total: int) -> None:
                bar.set_description(table, refresh=False)
                bar.update(done - seen.get(table, 0))
                seen[table] = done

            try:
                report = await copy_database(source, target, progress)
            finally:
                bar.close()
        except CopyRefused as exc:
            print(f"sora-bot: db copy refused: {exc}", file=sys.stderr)
            return 1
        finally:
            await target.close()
    finally:
        await source.close()
    rows = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
    print(f"sora-bot: copied {source_path} into {label}: {rows}.")
    print(f"sora-bot: verified: every row count matches, and all {report.balances_checked:,} balances equal "
          "their ledger sums.")
    return 0
