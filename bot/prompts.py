"""Prompt rules: what a member may ask for, and how their words are shown back without pinging anyone."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from bot.pricing import MAX_PROMPT_LENGTH
from storage.errors import UserFacingError

# C0/C1 controls except tab and newline, plus bidi overrides that could make a status message lie.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Characters that draw nothing although they are not Unicode "format" (Cf) characters: the combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels and Mongolian variation selectors. Together with every Cf
# character (zero-width space and joiners, word joiner, soft hyphen, BOM, bidi marks, tags) they can sit inside
# a word without a reader seeing them, so they are removed from the prompt before it is checked or sent.
_INVISIBLE_EXTRA = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0")
# Variation selectors only choose a glyph style (emoji vs text); kept in the prompt, ignored when matching.
_VARIATION_SELECTOR = re.compile(r"[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_MENTION = re.compile(r"@(everyone|here)|<(@[!&]?|#)(\d+)>")
_MARKDOWN = re.compile(r"([\\*_`~|>#\[\]()-])")
_ZWSP = "\u200b"


class PromptRejected(UserFacingError, ValueError):
    """The prompt cannot be sent; `user_message` tells the member what to change."""


def strip_invisible(text: str) -> str:
    """`text` without the characters that draw nothing (every Unicode Cf character and a few look-alikes).

    Why: `zebra\u200bcorn` reads as "zebracorn"; matching and the upstream must see what a person reads.
    """
    return "".join(ch for ch in text if ch not in _INVISIBLE_EXTRA and unicodedata.category(ch) != "Cf")


def _normalise(text: str) -> str:
    """The form banned words are compared in: invisible characters gone, NFKC, casefolded.

    NFKC runs again after casefold (casefolding can leave a string that is no longer normalised), and the
    invisible characters are stripped on both sides of it, as normalising can expose or produce them.
    """
    text = _VARIATION_SELECTOR.sub("", strip_invisible(text))
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return strip_invisible(folded)


def contains_banned(prompt: str, banned: Iterable[str]) -> bool:
    """Whether `prompt` contains any banned word or phrase.

    Insensitive to case, Unicode compatibility forms (full-width letters, ligatures), spacing and invisible
    characters, so a word is matched as a person reads it; whole words only ("dragonfly" is not "dragon").
    """
    words = " ".join(re.findall(r"\w+", _normalise(prompt)))
    padded = f" {words} "
    for phrase in banned:
        needle = " ".join(re.findall(r"\w+", _normalise(phrase)))
        if needle and f" {needle} " in padded:
            return True
    return False


def check_prompt(text: str, banned: Iterable[str] = ()) -> str:
    """Clean a prompt and check it against the model's and the server's rules.

    Returns:
        The prompt to send upstream: as the member wrote it, minus control and invisible characters,
        surrounding space trimmed.

    Raises:
        PromptRejected: empty, too long, or containing a word this server does not allow.
    """
    cleaned = strip_invisible(_CONTROL.sub("", text)).strip()
    if not cleaned:
        raise PromptRejected("Your prompt is empty. Describe the video you want, for example: a cat surfing at sunset.")
    if len(cleaned) > MAX_PROMPT_LENGTH:
        raise PromptRejected(
            f"Your prompt is {len(cleaned):,} characters; the limit is {MAX_PROMPT_LENGTH:,}. Shorten it and try again."
        )
    if contains_banned(cleaned, banned):
        raise PromptRejected("Your prompt contains words this server doesn't allow. Rephrase it and try again.")
    return cleaned


def neutralise_mentions(text: str) -> str:
    """Break `@everyone`, `@here` and `<@id>`-style mentions so they render as text and ping nobody."""
    return _MENTION.sub(lambda m: m.group(0).replace("@", "@" + _ZWSP).replace("<#", "<" + _ZWSP + "#"), text)


def display_prompt(text: str, limit: int = 300) -> str:
    """Render a member's prompt for a public message: shortened, markdown-inert, mention-proof."""
    flat = " ".join(_CONTROL.sub("", text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return neutralise_mentions(_MARKDOWN.sub(r"\\\1", flat))
