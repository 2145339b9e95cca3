"""Check a create request the way API.md describes it, with messages in the documented style."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_PROMPT = 5000
DURATIONS = (4, 8, 12)
ASPECT_RATIOS = ("16:9", "9:16")
MODELS = ("sora-2",)


class Rejected(Exception):
    """The request is refused with this error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CreateRequest:
    prompt: str
    duration: int
    aspect_ratio: str
    image_urls: list[str]
    callback_url: str | None


def _is_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _bad(message: str) -> Rejected:
    return Rejected("invalid_request", message)


def check_create(body: Any) -> CreateRequest:
    """Return the parsed request, or raise Rejected (400 invalid_request, or 404 model_not_found)."""
    if not isinstance(body, dict):
        raise _bad("Request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise _bad("'model' is required.")
    if not isinstance(model, str):
        raise _bad("'model' must be a string.")
    if model not in MODELS:
        raise Rejected("model_not_found", f"Model '{model}' does not exist or is inactive.")
    data = body.get("input")
    if data is None:
        raise _bad("'input' is required.")
    if not isinstance(data, dict):
        raise _bad("'input' must be an object.")
    prompt = data.get("prompt")
    if prompt is None:
        raise _bad("'input.prompt' is required.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("'input.prompt' must be a non-empty string.")
    if len(prompt) > MAX_PROMPT:
        raise _bad(f"'input.prompt' must be at most {MAX_PROMPT} characters.")
    duration = data.get("duration")
    if duration is None:
        raise _bad("'input.duration' is required.")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        raise _bad("'input.duration' must be one of 4, 8, 12.")
    aspect = data.get("aspect_ratio")
    if aspect is None:
        raise _bad("'input.aspect_ratio' is required.")
    if aspect not in ASPECT_RATIOS:
        raise _bad("'input.aspect_ratio' must be one of 16:9, 9:16.")
    images = data.get("image_urls", [])
    if images is None:
        images = []
    if not isinstance(images, list):
        raise _bad("'input.image_urls' must be an array of URLs.")
    if len(images) > 1:
        raise _bad("Only 1 image is allowed in 'input.image_urls'.")
    if not all(_is_url(u) for u in images):
        raise _bad("'input.image_urls' must contain http(s) URLs.")
    callback = body.get("callback_url")
    if callback is not None and not _is_url(callback):
        raise _bad("'callback_url' must be an http(s) URL.")
    return CreateRequest(prompt, duration, aspect, list(images), callback)
