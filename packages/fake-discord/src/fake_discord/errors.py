"""Discord's JSON error bodies, raised by handlers and turned into responses by the middleware."""

from __future__ import annotations

from typing import Any


class DiscordError(Exception):
    """An error answer: HTTP status plus Discord's ``{"message", "code"}`` body."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unauthorized() -> DiscordError:
    return DiscordError(401, 0, "401: Unauthorized")


def not_found(what: str = "404: Not Found", code: int = 0) -> DiscordError:
    return DiscordError(404, code, what)


def unknown_channel() -> DiscordError:
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordError:
    return DiscordError(401, 50027, "Invalid Webhook Token")


def missing_access() -> DiscordError:
    return DiscordError(403, 50001, "Missing Access")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def cannot_dm() -> DiscordError:
    return DiscordError(403, 50007, "Cannot send messages to this user")


def too_large() -> DiscordError:
    return DiscordError(413, 40005, "Request entity too large")


def empty_message() -> DiscordError:
    return DiscordError(400, 50006, "Cannot send an empty message")


def old_edit_limit() -> DiscordError:
    return DiscordError(400, 30046, "Maximum number of edits to messages older than 1 hour reached. Try again later.")


def invalid_form(field: str, code: str, message: str) -> DiscordError:
    """400 / 50035 with Discord's nested ``errors`` object for one field."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(field.split(".")):
        node = {key: node}
    return DiscordError(400, 50035, "Invalid Form Body", errors=node)
