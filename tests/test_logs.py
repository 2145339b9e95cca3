"""Logs never carry the Discord token, the API key or an interaction token."""

from __future__ import annotations

import io
import logging

from bot.logs import KeyValueFormatter, RedactingFilter


def test_secrets_and_tokens_are_scrubbed() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RedactingFilter(["my-discord-token-value"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("token %s key %s", "my-discord-token-value", "sk-live-abcdef")
        logger.info("POST /api/v10/webhooks/123/aW50ZXJhY3Rpb246MTIzOmFiY2RlZmdoaWprbG1ub3A/messages/@original")
        logger.info("auth", extra={"header": "Bearer sk-other-secret"})
        try:
            raise RuntimeError("failed with sk-in-traceback")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    for secret in (
        "my-discord-token-value",
        "sk-live-abcdef",
        "aW50ZXJhY3Rpb246",
        "sk-other-secret",
        "sk-in-traceback",
    ):
        assert secret not in out
    assert "[redacted]" in out
