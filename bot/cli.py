"""The `sora-bot` command line: every verb ends in one friendly line and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from bot import __version__
from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure_logging

log = logging.getLogger(__name__)


def _settings(require_discord: bool = True) -> Settings:
    settings = load_settings(require_discord=require_discord)
    secrets = [settings.sora_api_key.get_secret_value()]
    if settings.discord_token is not None:
        secrets.append(settings.discord_token.get_secret_value())
    if settings.database_url is not None:  # it holds the database password
        url = settings.database_url.get_secret_value()
        secrets += [url, urlsplit(url).password or url]
    configure_logging(settings.log_level, settings.log_format, secrets)
    if settings.sentry_dsn is not None:
        from bot.ops.metrics import process_name
        from bot.ops.sentry import init_sentry

        init_sentry(settings.sentry_dsn.get_secret_value(), secrets=secrets, process=process_name())
    return settings


def _cmd_run(args: argparse.Namespace) -> int:
    from bot.app import run_bot

    settings = _settings()
    return asyncio.run(run_bot(settings))


def _cmd_worker(args: argparse.Namespace) -> int:
    from bot.app import run_worker

    settings = _settings()
    return asyncio.run(run_worker(settings))


def _cmd_sync(args: argparse.Namespace) -> int:
    from bot.app import sync_commands

    settings = _settings()
    return asyncio.run(sync_commands(settings, guild_id=args.guild))


def _cmd_check(args: argparse.Namespace) -> int:
    from bot.checks import run_checks

    settings = _settings(require_discord=False)
    return asyncio.run(run_checks(settings))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line in one parser, so `--help` documents every verb."""
    parser = argparse.ArgumentParser(prog="sora-bot", description="A Discord bot that makes Sora 2 videos.")
    parser.add_argument("--version", action="version", version=f"sora-bot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run the bot (same as python -m bot)")
    run.set_defaults(func=_cmd_run)

    worker = sub.add_parser("worker", help="drive jobs from a shared PostgreSQL database (DATABASE_URL) with no "
                                         "gateway connection: post over REST, answer no commands")
    worker.set_defaults(func=_cmd_worker)

    sync = sub.add_parser("sync", help="register the slash commands with Discord")
    sync.add_argument(
        "--guild", type=int, default=None, help="sync to this server only (default: DEV_GUILD_ID or global)"
    )
    sync.set_defaults(func=_cmd_sync)

    check = sub.add_parser("check", help="check what `run` needs: configuration, the Discord token, database, "
                                       "the API key and the operator's balance (exit 1 if anything fails)")
    check.set_defaults(func=_cmd_check)

    from bot import cli_db, cli_video

    cli_video.register(sub)
    cli_db.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run one verb; friendly errors, exit codes, no tracebacks."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    configure_logging("WARNING")  # verbs that load settings reconfigure with the operator's level and secrets
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"sora-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sora-bot: stopped.", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: log the detail, print one line
        log.exception("unexpected error in %s", args.command)
        print(f"sora-bot: {args.command} failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
