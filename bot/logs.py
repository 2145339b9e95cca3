"""Logging set up once by the entry point: structured lines for operators, with secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

# Discord interaction tokens and webhook tokens are long URL-safe strings inside webhook/interaction paths;
# so is each job's callback token inside its callback URL.
_TOKEN_IN_PATH = re.compile(r"(/(?:webhooks/\d+|interactions/\d+|callbacks)/)[A-Za-z0-9_.\-]{20,}")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{3,}")

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secrets and anything shaped like a key or an interaction token from `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _TOKEN_IN_PATH.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _SK_KEY.sub("sk-[redacted]", text)


class RedactingFilter(logging.Filter):
    """Rewrite every record so no secret reaches a handler, whatever module logged it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = scrub(message, self.secrets)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, scrub(value, self.secrets))
        return True


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value…`: greppable lines that keep `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        base = (
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}Z "
            f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        if extras:
            base += " " + " ".join(
                f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in extras.items()
            )
        if record.exc_text:
            base += "\n" + record.exc_text
        return base


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Send every logger to stderr through the redacting filter; called once by the entry point."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("discord").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosqlite's DEBUG lines print every statement with its parameters: interaction and callback tokens.
    logging.getLogger("aiosqlite").setLevel(max(logging.getLevelName(level), logging.INFO))
