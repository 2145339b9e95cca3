"""Discord's rules for what a message may hold (components, embeds, modals) and who a message would ping.

These are the checks a lenient fake would skip and a real Discord enforces, so a bot that breaks them fails
its tests here instead of in production: too many action rows or buttons, over-long custom ids or labels,
oversized embeds, and mentions that ``allowed_mentions`` did not suppress.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import errors

MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_SELECT_OPTIONS = 25
MAX_MODAL_LABEL = 45
MAX_V2_COMPONENTS = 40
COMPONENTS_V2 = 1 << 15
ACTION_ROW, BUTTON, TEXT_INPUT, LABEL = 1, 2, 4, 18
SELECTS = (3, 5, 6, 7, 8)
LINK_STYLE, PREMIUM_STYLE = 5, 6

#: Embed limits (characters), and the 6,000 characters all embeds of a message share.
EMBED_LIMITS = {"title": 256, "description": 4096}
EMBED_TOTAL = 6000


def _walk(components: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for comp in components:
        if not isinstance(comp, dict):
            continue
        out.append(comp)
        out.extend(_walk(comp.get("components") or []))
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), dict):
                out.extend(_walk([comp[key]]))
    return out


def _check_ids(components: list[Any], where: str) -> None:
    seen: set[str] = set()
    for comp in _walk(components):
        cid = comp.get("custom_id")
        if cid is None:
            continue
        if not isinstance(cid, str) or not 1 <= len(cid) <= MAX_CUSTOM_ID:
            raise errors.invalid_form(f"{where}.custom_id", "BASE_TYPE_BAD_LENGTH",
                                      f"Must be between 1 and {MAX_CUSTOM_ID} in length.")
        if cid in seen:
            raise errors.invalid_form(f"{where}.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED",
                                      "Component custom id cannot be duplicated")
        seen.add(cid)


def check_components(components: Any, flags: int = 0) -> None:
    """A message's ``components``: at most 5 action rows of at most 5 buttons (or one select), every
    interactive one with a unique custom id of 1..100 characters, button labels of at most 80, link buttons
    with a URL and no custom id. Components v2 messages: at most 40 components, ids checked the same way."""
    if components is None:
        return
    if not isinstance(components, list):
        raise errors.invalid_form("components", "BASE_TYPE_LIST", "Must be a list.")
    _check_ids(components, "components")
    if flags & COMPONENTS_V2:
        if len(_walk(components)) > MAX_V2_COMPONENTS:
            raise errors.invalid_form("components", "BASE_TYPE_MAX_LENGTH",
                                      f"Must be {MAX_V2_COMPONENTS} or fewer in length.")
        return
    if len(components) > MAX_ROWS:
        raise errors.invalid_form("components", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer in length.")
    for r, row in enumerate(components):
        where = f"components.{r}"
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            raise errors.invalid_form(f"{where}.type", "UNION_TYPE_CHOICES",
                                      "Top-level components must be action rows (or use components v2).")
        children = row.get("components") or []
        if not children:
            raise errors.invalid_form(f"{where}.components", "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
        kinds = [c.get("type") for c in children if isinstance(c, dict)]
        if any(k in SELECTS for k in kinds) and len(children) > 1:
            raise errors.invalid_form(f"{where}.components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                                      "A select menu takes a whole action row.")
        if len(children) > MAX_BUTTONS_PER_ROW:
            raise errors.invalid_form(f"{where}.components", "BASE_TYPE_MAX_LENGTH",
                                      f"Must be {MAX_BUTTONS_PER_ROW} or fewer in length.")
        for c, child in enumerate(children):
            _check_child(child, f"{where}.components.{c}")


def _check_child(child: dict[str, Any], where: str) -> None:
    ctype = child.get("type")
    if ctype == BUTTON:
        label = child.get("label")
        if label is not None and len(str(label)) > MAX_BUTTON_LABEL:
            raise errors.invalid_form(f"{where}.label", "BASE_TYPE_MAX_LENGTH",
                                      f"Must be {MAX_BUTTON_LABEL} or fewer in length.")
        if not label and not child.get("emoji") and child.get("style") != PREMIUM_STYLE:
            raise errors.invalid_form(f"{where}", "BUTTON_COMPONENT_INVALID", "A button needs a label or an emoji.")
        if child.get("style") == LINK_STYLE:
            if not child.get("url") or child.get("custom_id"):
                raise errors.invalid_form(f"{where}", "BUTTON_COMPONENT_URL_REQUIRED",
                                          "A link button needs a url and no custom_id.")
        elif child.get("style") != PREMIUM_STYLE and not child.get("custom_id"):
            raise errors.invalid_form(f"{where}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
    elif ctype in SELECTS:
        if not child.get("custom_id"):
            raise errors.invalid_form(f"{where}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
        if ctype == 3 and not 1 <= len(child.get("options") or []) <= MAX_SELECT_OPTIONS:
            raise errors.invalid_form(f"{where}.options", "BASE_TYPE_BAD_LENGTH",
                                      f"Must be between 1 and {MAX_SELECT_OPTIONS} in length.")
    else:
        raise errors.invalid_form(f"{where}.type", "COMPONENT_TYPE_INVALID",
                                  f"Component type {ctype} is not allowed in an action row of a message.")


MAX_LABEL_DESCRIPTION = 100
MAX_OPTION_TEXT = 100
TEXT_DISPLAY = 10
MODAL_TOP_LEVEL = (ACTION_ROW, LABEL, TEXT_DISPLAY)


def check_modal(data: dict[str, Any]) -> None:
    """A modal: 1..5 top-level components (action rows holding one text input, labels, text displays), ids
    as for messages, labels of at most 45 characters (descriptions 100). A select goes in a label, never in an
    action row; a text input in a label has no label of its own; a default value fits its input's bounds;
    a string select has 1..25 options (label and value 1..100), no more defaults than ``max_values`` and
    ``0 <= min_values <= max_values <= 25``."""
    components = data.get("components") or []
    if not 1 <= len(components) <= MAX_ROWS:
        raise errors.invalid_form("data.components", "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_ROWS}.")
    _check_ids(components, "data.components")
    for i, comp in enumerate(components):
        where = f"data.components.{i}"
        ctype = comp.get("type") if isinstance(comp, dict) else None
        if ctype not in MODAL_TOP_LEVEL:
            raise errors.invalid_form(f"{where}.type", "UNION_TYPE_CHOICES",
                                      "A modal's components must be action rows, labels or text displays.")
        if ctype == ACTION_ROW:
            children = comp.get("components") or []
            if len(children) != 1 or not isinstance(children[0], dict) or children[0].get("type") != TEXT_INPUT:
                raise errors.invalid_form(f"{where}.components", "COMPONENT_TYPE_INVALID",
                                          "An action row in a modal holds exactly one text input; selects go in "
                                          "a label.")
            _check_modal_input(children[0], f"{where}.components.0", in_label=False)
        elif ctype == LABEL:
            text = comp.get("label")
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_MODAL_LABEL:
                raise errors.invalid_form(f"{where}.label", "BASE_TYPE_BAD_LENGTH",
                                          f"Must be between 1 and {MAX_MODAL_LABEL} in length.")
            if len(str(comp.get("description") or "")) > MAX_LABEL_DESCRIPTION:
                raise errors.invalid_form(f"{where}.description", "BASE_TYPE_MAX_LENGTH",
                                          f"Must be {MAX_LABEL_DESCRIPTION} or fewer in length.")
            inner = comp.get("component")
            if not isinstance(inner, dict):
                raise errors.invalid_form(f"{where}.component", "BASE_TYPE_REQUIRED", "This field is required")
            _check_modal_input(inner, f"{where}.component", in_label=True)


def _check_modal_input(comp: dict[str, Any], where: str, *, in_label: bool) -> None:
    ctype = comp.get("type")
    if ctype == TEXT_INPUT:
        label = comp.get("label")
        if in_label and label:
            raise errors.invalid_form(f"{where}.label", "COMPONENT_INVALID",
                                      "A text input inside a label cannot have its own label.")
        if not in_label and (not label or len(str(label)) > MAX_MODAL_LABEL):
            raise errors.invalid_form(f"{where}.label", "BASE_TYPE_BAD_LENGTH",
                                      f"Must be between 1 and {MAX_MODAL_LABEL} in length.")
        low, high = int(comp.get("min_length") or 0), int(comp.get("max_length") or 4000)
        if not 0 <= low <= high <= 4000:
            raise errors.invalid_form(f"{where}.max_length", "BASE_TYPE_BAD_LENGTH",
                                      "Lengths must satisfy 0 <= min_length <= max_length <= 4000.")
        value = comp.get("value")
        if isinstance(value, str) and len(value) > high:
            raise errors.invalid_form(f"{where}.value", "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
    elif ctype in SELECTS:
        if not in_label:
            raise errors.invalid_form(f"{where}.type", "COMPONENT_TYPE_INVALID", "A select in a modal goes in a label.")
        low, high = int(comp.get("min_values", 1)), int(comp.get("max_values", 1))
        if not 0 <= low <= high <= MAX_SELECT_OPTIONS:
            raise errors.invalid_form(f"{where}.max_values", "BASE_TYPE_BAD_LENGTH",
                                      "Counts must satisfy 0 <= min_values <= max_values <= 25.")
        if ctype == 3:
            options = comp.get("options") or []
            if not 1 <= len(options) <= MAX_SELECT_OPTIONS:
                raise errors.invalid_form(f"{where}.options", "BASE_TYPE_BAD_LENGTH",
                                          f"Must be between 1 and {MAX_SELECT_OPTIONS} in length.")
            for o, option in enumerate(options):
                for key in ("label", "value"):
                    if not 1 <= len(str(option.get(key) or "")) <= MAX_OPTION_TEXT:
                        raise errors.invalid_form(f"{where}.options.{o}.{key}", "BASE_TYPE_BAD_LENGTH",
                                                  f"Must be between 1 and {MAX_OPTION_TEXT} in length.")
            if sum(1 for option in options if option.get("default")) > high:
                raise errors.invalid_form(f"{where}.options", "SELECT_COMPONENT_TOO_MANY_DEFAULTS",
                                          "More default options than max_values.")
    else:
        raise errors.invalid_form(f"{where}.type", "COMPONENT_TYPE_INVALID",
                                  f"Component type {ctype} cannot be answered in a modal.")


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def check_embeds(embeds: Any) -> None:
    """At most 10 embeds; title 256, description 4096, 25 fields (name 256, value 1024), footer 2048, author
    256, and 6,000 characters over all embeds of the message."""
    if not embeds:
        return
    if len(embeds) > 10:
        raise errors.invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            raise errors.invalid_form(f"embeds.{i}", "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
        for key, limit in EMBED_LIMITS.items():
            if _text_len(embed.get(key)) > limit:
                raise errors.invalid_form(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH",
                                          f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise errors.invalid_form(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        footer = _text_len((embed.get("footer") or {}).get("text"))
        author = _text_len((embed.get("author") or {}).get("name"))
        if footer > 2048 or author > 256:
            raise errors.invalid_form(f"embeds.{i}", "BASE_TYPE_MAX_LENGTH", "Footer or author too long.")
        total += _text_len(embed.get("title")) + _text_len(embed.get("description")) + footer + author
        for f, fld in enumerate(fields):
            name, value = _text_len(fld.get("name")), _text_len(fld.get("value"))
            if name > 256 or value > 1024:
                raise errors.invalid_form(f"embeds.{i}.fields.{f}", "BASE_TYPE_MAX_LENGTH", "Field too long.")
            total += name + value
    if total > EMBED_TOTAL:
        raise errors.invalid_form("embeds", "MESSAGE_EMBED_TOTAL_LENGTH",
                                  f"Embed size exceeds maximum size of {EMBED_TOTAL}")


# ---- mentions ------------------------------------------------------------------------------------------------

_USER = re.compile(r"(?<!\\)<@!?(\d+)>")
_ROLE = re.compile(r"(?<!\\)<@&(\d+)>")
_EVERYONE = re.compile(r"(?<!\\)@(everyone|here)\b")


@dataclass(frozen=True)
class Pings:
    """Who one version of a message (its creation or an edit) would notify."""

    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.everyone)


def check_allowed_mentions(allowed: Any) -> None:
    """Discord refuses ``parse`` naming users (or roles) together with an explicit list of them."""
    if allowed is None:
        return
    if not isinstance(allowed, dict):
        raise errors.invalid_form("allowed_mentions", "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            raise errors.invalid_form("allowed_mentions.parse", "SET_TYPE_ALREADY_CONTAINS_VALUE",
                                      f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.')
        if len(allowed.get(kind) or []) > 100:
            raise errors.invalid_form(f"allowed_mentions.{kind}", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer.")


def compute_pings(content: str, allowed: dict[str, Any] | None, replied_to: int | None = None) -> Pings:
    """Who Discord would notify for ``content`` under ``allowed_mentions`` (absent: everything in the content
    pings, the replied-to author too). Counted conservatively: a role or @everyone mention counts as a ping
    whatever the role's mentionable flag or the author's Mention Everyone permission, because servers often
    grant bots that permission; a mention escaped with a backslash does not count."""
    users = {int(u) for u in _USER.findall(content)}
    roles = {int(r) for r in _ROLE.findall(content)}
    everyone = bool(_EVERYONE.search(content))
    if allowed is None:
        if replied_to is not None:
            users.add(replied_to)
        return Pings(frozenset(users), frozenset(roles), everyone)
    parse = set(allowed.get("parse") or [])
    allowed_users = None if "users" in parse else {int(u) for u in allowed.get("users") or []}
    allowed_roles = None if "roles" in parse else {int(r) for r in allowed.get("roles") or []}
    pinged_users = users if allowed_users is None else users & allowed_users
    if replied_to is not None and allowed.get("replied_user"):
        pinged_users = pinged_users | {replied_to}
    pinged_roles = roles if allowed_roles is None else roles & allowed_roles
    return Pings(frozenset(pinged_users), frozenset(pinged_roles), everyone and "everyone" in parse)
