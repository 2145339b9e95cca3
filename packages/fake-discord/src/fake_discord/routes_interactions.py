"""Interaction callbacks and the interaction webhook (followups, @original), with Discord's timing rules.

Enforced: the initial callback within ``fake.initial_response_deadline`` of dispatch (else 10062),
only one initial callback (40060), the token's lifetime for webhook calls (50027), callback types
valid for the interaction type (50035). A followup while the deferred response is still "thinking…"
replaces that message, as on Discord.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors, rules
from .messages import check_body, delete_message, edit_message, new_message, store_parts
from .models import CallbackRecord, Channel, InteractionRecord, Message
from .rest import RECORD

if TYPE_CHECKING:
    from .server import FakeDiscord

A = "/api/v10"
COMPONENT_OR_MODAL = (3, 5)


def register(app: web.Application, fake: FakeDiscord) -> None:
    world = fake.world

    def channel_of(inter: InteractionRecord) -> Channel:
        channel = world.channels.get(inter.channel_id or 0)
        if channel is None or channel.deleted:
            raise errors.unknown_channel()
        return channel

    def msg_type(inter: InteractionRecord) -> int:
        if inter.type == 2:
            return 23 if inter.payload.get("data", {}).get("type", 1) != 1 else 20
        return 0

    def response_message(inter: InteractionRecord, body: dict[str, Any], files: list[Any], flags: int) -> Message:
        message = new_message(
            fake,
            channel_of(inter),
            world.bot.id,
            body,
            files,
            webhook_id=world.application_id,
            interaction_id=inter.id,
            msg_type=msg_type(inter),
            extra_flags=flags,
        )
        inter.original_message_id = message.id
        return message

    async def callback(request: web.Request) -> tuple[int, Any]:
        record = request[RECORD]
        try:
            inter = fake.interactions.get(int(request.match_info["interaction_id"]))
        except ValueError:
            inter = None
        if inter is None or inter.token != request.match_info["token"]:
            raise errors.unknown_interaction()
        now = time.monotonic()
        if inter.response is not None:
            inter.rejected_callbacks.append(40060)
            raise errors.already_acknowledged()
        if now - inter.dispatched_at > fake.initial_response_deadline:
            inter.rejected_callbacks.append(10062)
            raise errors.unknown_interaction()
        body = record.json or {}
        cb_type = int(body.get("type", 0))
        data = body.get("data") or {}
        if cb_type in (6, 7) and inter.type not in COMPONENT_OR_MODAL:
            raise errors.invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
        if cb_type == 9 and inter.type == 5:
            raise errors.invalid_form(
                "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Cannot respond to a modal with a modal"
            )
        if cb_type not in (1, 4, 5, 6, 7, 8, 9, 10, 12):
            raise errors.invalid_form(
                "type", "BASE_TYPE_CHOICES", f"Value must be one of the response types, got {cb_type}"
            )
        files = record.files
        stored: list[Any] = []
        message: Message | None = None
        loading = False
        if cb_type == 4:
            check_body(fake, data, files, channel_of(inter), create=True)
            stored = store_parts(fake, files, data)
            message = response_message(inter, data, stored, 0)
        elif cb_type == 5:
            loading = True
            message = response_message(inter, {"flags": data.get("flags", 0)}, [], 128)
        elif cb_type in (6, 7):
            target = world.messages_by_id.get(inter.message_id or 0)
            if cb_type == 7:
                if target is None:
                    raise errors.unknown_message()
                check_body(fake, data, files, channel_of(inter), create=False)
                stored = store_parts(fake, files, data)
                edit_message(fake, target, data, stored)
            message = target
            if target is not None:  # Discord: the original response of a component press is its message
                inter.original_message_id = target.id
        elif cb_type == 9:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise errors.invalid_form("data", "BASE_TYPE_REQUIRED", "custom_id, title and components are required")
            if len(data["title"]) > 45:
                raise errors.invalid_form("data.title", "BASE_TYPE_MAX_LENGTH", "Must be 45 or fewer in length.")
            rules.check_modal(data)
        inter.response = CallbackRecord(type=cb_type, data=data, at=now, files=stored)
        fake.notify()
        if record.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        meta: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        resource: dict[str, Any] = {"type": cb_type}
        if message is not None:
            meta.update(
                response_message_id=str(message.id),
                response_message_loading=loading,
                response_message_ephemeral=message.ephemeral,
            )
            resource["message"] = world.message_payload(message)
        return 200, {"interaction": meta, "resource": resource}

    def webhook_interaction(request: web.Request) -> InteractionRecord:
        if request.match_info["application_id"] != str(world.application_id):
            raise errors.unknown_webhook()
        inter = fake.interactions_by_token.get(request.match_info["token"])
        if inter is None:
            raise errors.unknown_webhook()
        if fake.clock.now() - inter.created_at > fake.interaction_token_lifetime:
            inter.rejected_callbacks.append(50027)
            raise errors.invalid_webhook_token()
        return inter

    def target_message(inter: InteractionRecord, raw_id: str) -> Message:
        if raw_id == "@original":
            if inter.original_message_id is None:
                raise errors.unknown_message()
            message = world.messages_by_id[inter.original_message_id]
        else:
            try:
                mid = int(raw_id)
            except ValueError:
                raise errors.unknown_message() from None
            if mid != inter.original_message_id and mid not in inter.followup_ids:
                raise errors.unknown_message()
            message = world.messages_by_id[mid]
        if message.deleted:
            raise errors.unknown_message()
        return message

    async def execute(request: web.Request) -> tuple[int, Any]:
        record = request[RECORD]
        inter = webhook_interaction(request)
        if inter.response is None:
            raise errors.unknown_webhook()
        body = record.json or {}
        channel = channel_of(inter)
        check_body(fake, body, record.files, channel, create=True)
        stored = store_parts(fake, record.files, body)
        original = inter.original_message
        if original is not None and original.loading and inter.response.type == 5:
            # Discord: the first followup replaces the "thinking…" message, keeping its ephemerality.
            edit_message(fake, original, body, stored)
            inter.followup_ids.append(original.id)
            message = original
        else:
            message = new_message(
                fake, channel, world.bot.id, body, stored, webhook_id=world.application_id, interaction_id=inter.id
            )
            inter.followup_ids.append(message.id)
        fake.notify()
        for rule in world.held_creates:  # "Discord made the message, the answer never reached the bot"
            if rule.matches(record.path, bool(record.files)):
                rule.times -= 1
                rule.held.append(message.id)
                fake.notify()
                await rule.wait()
                break
        if record.query.get("wait", "").lower() in ("1", "true"):
            return 200, world.message_payload(message)
        return 204, None

    async def get_msg(request: web.Request) -> tuple[int, Any]:
        inter = webhook_interaction(request)
        return 200, world.message_payload(target_message(inter, request.match_info["message_id"]))

    async def edit_msg(request: web.Request) -> tuple[int, Any]:
        record = request[RECORD]
        inter = webhook_interaction(request)
        message = target_message(inter, request.match_info["message_id"])
        body = record.json or {}
        check_body(fake, body, record.files, channel_of(inter), create=False)
        edit_message(fake, message, body, store_parts(fake, record.files, body))
        return 200, world.message_payload(message)

    async def delete_msg(request: web.Request) -> tuple[int, Any]:
        inter = webhook_interaction(request)
        delete_message(fake, target_message(inter, request.match_info["message_id"]))
        return 204, None

    r = app.router
    r.add_post(f"{A}/interactions/{{interaction_id}}/{{token}}/callback", callback)
    hook = f"{A}/webhooks/{{application_id}}/{{token}}"
    r.add_post(hook, execute)
    for mid in ("{message_id:@original}", "{message_id}"):
        r.add_get(f"{hook}/messages/{mid}", get_msg)
        r.add_patch(f"{hook}/messages/{mid}", edit_msg)
        r.add_delete(f"{hook}/messages/{mid}", delete_msg)
