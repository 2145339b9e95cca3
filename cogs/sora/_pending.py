"""What a member was offered and has not answered yet: a priced confirmation, or an open Animate form.

Kept in memory, bounded and expiring: after OFFER_LIFETIME (Discord's own 15 minutes for an interaction), or
after a restart, the button or form still answers, saying the offer expired and nothing was charged. Taking an
offer removes it, so a confirmation pressed twice makes one video.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from cogs.sora._flow import ImageSource

T = TypeVar("T")
OFFER_LIFETIME = 15 * 60.0
MAX_PENDING = 10_000  # offers kept at most (the oldest go first): bounded memory however many press buttons
OfferKind = Literal["reroll", "edit", "extend"]


@dataclass(frozen=True, slots=True)
class Offer:
    """A request a member is asked to confirm; `source_job_id` is the video it was made from."""

    kind: OfferKind
    user_id: int
    source_job_id: str
    prompt: str
    duration: int
    aspect_ratio: str
    image: ImageSource | None


@dataclass(frozen=True, slots=True)
class AnimateForm:
    """An open Animate with Sora form: whose it is and the image it will animate (too long for a custom id)."""

    user_id: int
    image: ImageSource


class Pending(Generic[T]):
    """Items by random id, each for OFFER_LIFETIME at most, MAX_PENDING at most (oldest dropped first)."""

    def __init__(self, clock: Callable[[], float], lifetime: float = OFFER_LIFETIME,
                 max_items: int = MAX_PENDING) -> None:
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self.clock, self.lifetime, self.max_items = clock, lifetime, max_items

    @staticmethod
    def new_key() -> str:
        """A fresh id (16 hex digits, unguessable) for a button's or a form's custom id."""
        return secrets.token_hex(8)

    def put(self, item: T, key: str | None = None) -> str:
        """Keep `item` under `key` (a new one by default) and return the key."""
        key = key or self.new_key()
        self._items[key] = (self.clock() + self.lifetime, item)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return key

    def take(self, key: str) -> T | None:
        """The item, removed; None when unknown, already taken or expired."""
        entry = self._items.pop(key, None)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def discard(self, key: str) -> None:
        self._items.pop(key, None)
