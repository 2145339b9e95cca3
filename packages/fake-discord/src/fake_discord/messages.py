"""Creating and editing messages from request bodies, with Discord's validation and upload limits.

Channel sends, interaction responses and webhook followups all go through here, so content limits,
the upload limit and the edit cap on old messages are enforced the same way everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors, rules
from .models import Channel, Message, Part, StoredFile
from .snowflake import snowflake_time

if TYPE_CHECKING:
    from .server import FakeDiscord

DEFAULT_DM_UPLOAD_LIMIT = 10 * 1024 * 1024
MESSAGE_FLAGS_SETTABLE = 4 | 64 | 4096 | 32768  # suppress embeds, ephemeral, silent, components v2


def upload_limit(fake: FakeDiscord, channel: Channel | None) -> int:
    if channel is not None and channel.guild_id is not None and channel.guild_id in fake.world.guilds:
        return fake.world.guilds[channel.guild_id].filesize_limit
    return DEFAULT_DM_UPLOAD_LIMIT


def check_body(
    fake: FakeDiscord, body: dict[str, Any], files: list[Part], channel: Channel | None, create: bool
) -> None:
    """Reject what Discord rejects: too long, empty, too many files, too large uploads."""
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise errors.invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
    if content is not None and len(content) > 2000:
        raise errors.invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = body.get("embeds") or []
    rules.check_embeds(embeds)
    rules.check_components(body.get("components"), int(body.get("flags") or 0))
    rules.check_allowed_mentions(body.get("allowed_mentions"))
    if len(files) > 10:
        raise errors.invalid_form("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    limit = upload_limit(fake, channel)
    sizes = [len(p.data) for p in files]
    if any(size > limit for size in sizes) or sum(sizes) > limit:
        raise errors.too_large()
    if create and not (
        content or embeds or files or body.get("components") or body.get("sticker_ids") or body.get("poll")
    ):
        raise errors.empty_message()


def pings_of(fake: FakeDiscord, message: Message) -> rules.Pings:
    """Who this version of the message would notify (an ephemeral message notifies nobody)."""
    if message.ephemeral:
        return rules.Pings()
    replied_to = None
    ref = message.message_reference
    if message.type == 19 and isinstance(ref, dict) and ref.get("message_id"):
        target = fake.world.messages_by_id.get(int(ref["message_id"]))
        replied_to = target.author_id if target is not None else None
    return rules.compute_pings(message.content, message.allowed_mentions, replied_to)


def store_parts(fake: FakeDiscord, files: list[Part], body: dict[str, Any]) -> list[StoredFile]:
    """Store uploaded files; names come from payload_json ``attachments`` when given, else the part."""
    described = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
    stored: list[StoredFile] = []
    for index, part in enumerate(files):
        meta = described.get(str(index), {})
        filename = meta.get("filename") or part.filename or f"file{index}"
        stored.append(fake.world.store_file(filename, part.data, part.content_type))
    return stored


def new_message(
    fake: FakeDiscord,
    channel: Channel,
    author_id: int,
    body: dict[str, Any],
    files: list[StoredFile],
    *,
    webhook_id: int | None = None,
    interaction_id: int | None = None,
    msg_type: int = 0,
    extra_flags: int = 0,
    dispatch: bool = True,
    snapshots: list[Message] | None = None,
) -> Message:
    now = fake.clock.now()
    reference = body.get("message_reference")
    is_reply = bool(reference) and not (isinstance(reference, dict) and reference.get("type") == 1)  # 1 = forward
    message = Message(
        id=fake.ids.next(),
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author_id=author_id,
        content=body.get("content") or "",
        embeds=list(body.get("embeds") or []),
        components=list(body.get("components") or []),
        flags=(int(body.get("flags") or 0) & MESSAGE_FLAGS_SETTABLE) | extra_flags,
        allowed_mentions=body.get("allowed_mentions"),
        attachments=files,
        nonce=body.get("nonce"),
        message_reference=body.get("message_reference"),
        created_at=now,
        webhook_id=webhook_id,
        interaction_id=interaction_id,
        type=19 if is_reply and msg_type == 0 else msg_type,
        raw=body,
        snapshots=list(snapshots or []),
    )
    message.pings.append(pings_of(fake, message))
    fake.world.add_message(message)
    if dispatch and not message.ephemeral:
        fake.gateway.dispatch_message("MESSAGE_CREATE", message)
    fake.notify()
    return message


def edit_message(
    fake: FakeDiscord,
    message: Message,
    body: dict[str, Any],
    files: list[StoredFile],
    *,
    clear_loading: bool = True,
) -> Message:
    """Apply an edit body, keeping the previous state in ``message.history``; enforces the 30046 cap."""
    age = fake.clock.now() - snowflake_time(message.id)
    old = age > 3600
    limit = fake.old_message_edit_limit
    if old and limit is not None and message.edits_when_old >= limit:
        raise errors.old_edit_limit()
    _refuse_empty_result(message, body, files)
    message.history.append(message.snapshot())
    if old:
        message.edits_when_old += 1
    if "content" in body:
        message.content = body["content"] or ""
    if "embeds" in body:
        message.embeds = list(body["embeds"] or [])
    if "components" in body:
        message.components = list(body["components"] or [])
    if "allowed_mentions" in body:
        message.allowed_mentions = body["allowed_mentions"]
    if "flags" in body and body["flags"] is not None:
        keep = message.flags & (64 | 128)
        message.flags = (int(body["flags"]) & (4 | 4096 | 32768)) | keep
    if "attachments" in body and body["attachments"] is not None:
        keep_ids = {str(a.get("id")) for a in body["attachments"] if isinstance(a, dict)}
        message.attachments = [a for a in message.attachments if str(a.id) in keep_ids]
    message.attachments = message.attachments + files
    if clear_loading:
        message.flags &= ~128
    message.edited_at = fake.clock.now()
    message.raw = body
    if "allowed_mentions" not in body:
        message.allowed_mentions = None  # an edit without it is parsed with Discord's default (everything)
    message.pings.append(pings_of(fake, message))
    if not message.ephemeral:
        fake.gateway.dispatch_message("MESSAGE_UPDATE", message)
    fake.notify()
    return message


def _refuse_empty_result(message: Message, body: dict[str, Any], files: list[StoredFile]) -> None:
    """Discord refuses an edit that would leave the message with nothing to show (50006)."""
    content = (body["content"] or "") if "content" in body else message.content
    embeds = (body["embeds"] or []) if "embeds" in body else message.embeds
    components = (body["components"] or []) if "components" in body else message.components
    attachments = message.attachments
    if "attachments" in body and body["attachments"] is not None:
        keep = {str(a.get("id")) for a in body["attachments"] if isinstance(a, dict)}
        attachments = [a for a in attachments if str(a.id) in keep]
    if not (content or embeds or components or attachments or files or message.snapshots):
        raise errors.empty_message()


def delete_message(fake: FakeDiscord, message: Message) -> None:
    message.deleted = True
    for stored in message.attachments:  # Discord removes a deleted message's files: their links now 404
        fake.world.files.pop(stored.id, None)
    if not message.ephemeral:
        data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        fake.gateway.dispatch_to_channel("MESSAGE_DELETE", data, message.channel_id)
    fake.notify()
