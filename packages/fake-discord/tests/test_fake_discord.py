"""The fake Discord against the REAL discord.py client: login, commands, interactions, enforcement.

A tiny cog exercises every kind of interaction the bot uses; each test drives it through the fake
and asserts on what the fake recorded. Every wait is bounded; nothing sleeps hoping.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from fake_discord import FakeDiscord, InteractionError, patch_discord_py

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f80f0000010101005d2a4f8b0000000049454e44ae426082"
)


class PromptModal(discord.ui.Modal, title="Animate with Sora"):
    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt", max_length=4000
    )

    def __init__(self, cog: Probe, image_url: str | None) -> None:
        super().__init__()
        self.cog = cog
        self.image_url = image_url

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"animating: {self.prompt.value} from {self.image_url}", ephemeral=True)


class RerollView(discord.ui.View):
    """Persistent (timeout=None, fixed custom_id) so it keeps working after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Re-roll", custom_id="probe:reroll", style=discord.ButtonStyle.primary)
    async def reroll(self, interaction: discord.Interaction, button: discord.ui.Button[RerollView]) -> None:
        await interaction.response.send_message(f"re-rolled by {interaction.user.id}", ephemeral=True)

    @discord.ui.button(label="Done", custom_id="probe:done")
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button[RerollView]) -> None:
        await interaction.response.edit_message(content="done", view=None)


class Probe(commands.Cog):
    """Test commands; failures the bot sees are kept in ``errors`` so tests can assert on them."""

    sora = app_commands.Group(name="sora", description="Make videos", guild_only=True)

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.errors: list[discord.HTTPException] = []
        self.notify: Any = lambda: None  # set to fake.notify so waits wake when the bot records an error
        self.release = asyncio.Event()
        self.slow_seconds = 0.0
        self.downloaded: list[bytes] = []
        self.menu = app_commands.ContextMenu(name="Animate with Sora", callback=self.animate)
        bot.tree.add_command(self.menu)

    def failed(self, exc: discord.HTTPException) -> None:
        self.errors.append(exc)
        self.notify()

    @app_commands.command(name="ping", description="Answer at once")
    async def ping(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"pong <@{interaction.user.id}> @everyone")

    @app_commands.command(name="echo", description="Defer, then follow up")
    async def echo(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(text)
        await interaction.followup.send(f"second: {text}")

    @app_commands.command(name="slow", description="Answer after slow_seconds")
    async def slow(self, interaction: discord.Interaction) -> None:
        await asyncio.sleep(self.slow_seconds)
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            self.failed(exc)

    @app_commands.command(name="later", description="Defer, wait for the test, then follow up")
    async def later(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.release.wait()
        try:
            await interaction.followup.send("finally")
        except discord.HTTPException as exc:
            self.failed(exc)

    @app_commands.command(name="post", description="Post in the channel with the bot token")
    async def post(self, interaction: discord.Interaction, text: str, size: int = 0) -> None:
        await interaction.response.send_message("posting", ephemeral=True)
        kwargs: dict[str, Any] = {}
        if size:
            kwargs["file"] = discord.File(io.BytesIO(b"v" * size), "video.mp4")
        try:
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(text, **kwargs)
        except discord.HTTPException as exc:
            self.failed(exc)

    @app_commands.command(name="progress", description="Edit the original response a few times")
    async def progress(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("0%")
        for pct in (50, 100):
            await interaction.edit_original_response(content=f"{pct}%")
        original = await interaction.original_response()
        await interaction.followup.send(f"final {original.content}", ephemeral=True)

    @app_commands.command(name="admin", description="Admins only")
    @app_commands.default_permissions(manage_guild=True)
    async def admin(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"allowed={interaction.permissions.manage_guild}", ephemeral=True)

    @app_commands.command(name="dm", description="DM the caller")
    async def dm(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("check your DMs", ephemeral=True)
        try:
            await interaction.user.send("hello in private")
        except discord.HTTPException as exc:
            self.failed(exc)

    @app_commands.command(name="attach", description="Respond with a file")
    async def attach(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("here", file=discord.File(io.BytesIO(PNG_1x1), "frame.png"))

    @app_commands.command(name="button", description="Post a persistent button")
    async def button(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("result", view=RerollView())

    @app_commands.command(name="private-button", description="An ephemeral message with a button")
    async def private_button(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=30)
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(label="press", custom_id="private:press")

        async def pressed(press: discord.Interaction) -> None:
            await press.response.edit_message(content="pressed", view=None)

        button.callback = pressed  # type: ignore[method-assign]
        view.add_item(button)
        await interaction.response.send_message("only you see this", view=view, ephemeral=True)

    @sora.command(name="generate", description="Generate a video")
    @app_commands.choices(duration=[app_commands.Choice(name=f"{d} s", value=d) for d in (4, 8, 12)])
    async def generate(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 5000],
        duration: int = 4,
        image: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        size = 0
        if image is not None:
            data = await image.read()
            self.downloaded.append(data)
            size = len(data)
        await interaction.followup.send(
            f"{prompt}|{duration}|{size}|{interaction.filesize_limit}",
            file=discord.File(io.BytesIO(b"\x00" * 64), "video.mp4"),
            ephemeral=True,
        )

    async def animate(self, interaction: discord.Interaction, message: discord.Message) -> None:
        url = message.attachments[0].url if message.attachments else None
        await interaction.response.send_modal(PromptModal(self, url))


@dataclass
class World:
    fake: FakeDiscord
    guild_id: int
    channel_id: int
    user_id: int
    bot: commands.Bot
    probe: Probe


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


async def start_bot(fake: FakeDiscord, guild_id: int) -> tuple[commands.Bot, Probe, asyncio.Task[None]]:
    bot = commands.Bot(
        command_prefix="!",
        intents=discord.Intents.default(),
        allowed_mentions=discord.AllowedMentions.none(),
        guild_ready_timeout=0.05,
    )
    probe = Probe(bot)
    probe.notify = fake.notify

    async def setup_hook() -> None:
        await bot.add_cog(probe)
        bot.add_view(RerollView())
        guild = discord.Object(id=guild_id)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    task = asyncio.create_task(bot.start(fake.token))
    await asyncio.wait_for(bot.wait_until_ready(), 10)
    return bot, probe, task


async def stop_bot(bot: commands.Bot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def world(fake: FakeDiscord) -> AsyncIterator[World]:
    guild = fake.add_guild("Test Server", filesize_limit=10 * 1024 * 1024)
    channel = fake.add_channel(guild.id, "general")
    user = fake.add_user("alice")
    fake.add_member(guild.id, user.id)
    with patch_discord_py(fake):
        bot, probe, task = await start_bot(fake, guild.id)
        try:
            yield World(fake, guild.id, channel.id, user.id, bot, probe)
        finally:
            await stop_bot(bot, task)


# ---------------------------------------------------------------------------------------------- login


async def test_login_ready_and_command_registration(world: World) -> None:
    fake, bot = world.fake, world.bot
    routes = [(r.method, r.route) for r in fake.requests]
    assert ("GET", "/users/@me") in routes
    assert ("GET", "/oauth2/applications/@me") in routes
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    guild = bot.get_guild(world.guild_id)
    assert guild is not None and guild.me is not None
    channel = guild.get_channel(world.channel_id)
    assert isinstance(channel, discord.TextChannel)
    assert channel.permissions_for(guild.me).send_messages
    sent = [e.t for e in fake.gateway.log if e.direction == "send" and e.op == 0]
    assert sent[:2] == ["READY", "GUILD_CREATE"]
    assert all(r.headers.get("Authorization") is None for r in fake.requests)

    cmds = {c.name: c for c in await fake.sync_wait_commands(5, guild_id=world.guild_id)}
    assert {"ping", "echo", "sora", "Animate with Sora"} <= set(cmds)
    assert cmds["Animate with Sora"].type == 3
    sora = cmds["sora"]
    generate = next(o for o in sora.options if o["name"] == "generate")
    assert generate["type"] == 1
    opts = {o["name"]: o for o in generate["options"]}
    assert opts["prompt"]["type"] == 3 and opts["prompt"]["max_length"] == 5000 and opts["prompt"]["required"]
    assert [c["value"] for c in opts["duration"]["choices"]] == [4, 8, 12]
    assert opts["image"]["type"] == 11
    put = fake.requests_to("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
    assert len(put) == 1 and put[0].status == 200


async def test_wrong_token_is_refused(fake: FakeDiscord) -> None:
    with patch_discord_py(fake):
        client = discord.Client(intents=discord.Intents.default())
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(client.login("not-the-token"), 5)
        await client.close()
    assert fake.requests[-1].status == 401


# ------------------------------------------------------------------------------------ interactions


async def test_slash_response_and_allowed_mentions(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "ping")
    response = await inter.wait_response(5)
    assert response.type == 4
    assert response.data is not None and response.data["allowed_mentions"] == {"parse": []}
    assert inter.response_latency is not None and inter.response_latency < 3
    msg = inter.original_message
    assert msg is not None and msg.content.startswith("pong") and not msg.ephemeral
    assert msg.allowed_mentions == {"parse": []}
    assert fake.channel_messages(world.channel_id) == [msg]
    callback = fake.requests_to("POST", "/interactions/{interaction_id}/{token}/callback")[0]
    assert callback.query.get("with_response") in ("1", "true") and callback.status == 200


async def test_defer_then_followups_replace_thinking_message(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "echo", options={"text": "hello"})
    assert (await inter.wait_response()).type == 5
    first = await inter.wait_followup(1)
    second = await inter.wait_followup(2)
    assert first.id == inter.original_message_id and first.content == "hello" and not first.loading
    assert second.id != first.id and second.content == "second: hello"


async def test_subcommand_with_attachment_is_downloaded(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(
        world.guild_id,
        world.channel_id,
        world.user_id,
        "sora generate",
        options={"prompt": "a cat", "duration": 8},
        attachments={"image": ("cat.png", PNG_1x1, "image/png")},
    )
    data = inter.payload["data"]
    assert data["options"][0]["name"] == "generate" and data["options"][0]["type"] == 1
    assert [o["name"] for o in data["options"][0]["options"]] == ["prompt", "duration", "image"]
    (att,) = data["resolved"]["attachments"].values()
    assert att["content_type"] == "image/png" and att["width"] == 1
    followup = await inter.wait_followup(1)
    assert followup.ephemeral
    assert followup.content == f"a cat|8|{len(PNG_1x1)}|{10 * 1024 * 1024}"
    assert [a.filename for a in followup.attachments] == ["video.mp4"] and followup.attachments[0].size == 64
    assert world.probe.downloaded == [PNG_1x1]
    assert fake.attachment_downloads


async def test_refuses_what_a_discord_client_would_not_send(world: World) -> None:
    fake = world.fake
    with pytest.raises(InteractionError):
        await fake.slash(
            world.guild_id, world.channel_id, world.user_id, "sora generate", options={"prompt": "x", "duration": 5}
        )
    with pytest.raises(InteractionError):
        await fake.slash(world.guild_id, world.channel_id, world.user_id, "sora generate", options={"duration": 4})
    with pytest.raises(InteractionError):
        await fake.slash(world.guild_id, world.channel_id, world.user_id, "nope")


async def test_context_menu_opens_modal_and_submit(world: World) -> None:
    fake = world.fake
    target = fake.post_user_message(
        world.channel_id, world.user_id, "look", attachments=[("cat.png", PNG_1x1, "image/png")]
    )
    inter = await fake.context_menu(world.guild_id, world.channel_id, world.user_id, "Animate with Sora", target)
    assert inter.payload["data"]["type"] == 3 and inter.payload["data"]["target_id"] == str(target.id)
    response = await inter.wait_response()
    assert response.type == 9 and inter.modal is not None and inter.modal["title"] == "Animate with Sora"
    submitted = await fake.submit_modal(inter, {"prompt": "make it fly"})
    msg = await submitted.wait_original()
    assert msg.ephemeral and msg.content.startswith("animating: make it fly from http://127.0.0.1")
    with pytest.raises(InteractionError):
        await fake.submit_modal(inter, {"prompt": ""})


async def test_persistent_button(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "button")
    message = await inter.wait_original()
    other = fake.add_user("bob")
    fake.add_member(world.guild_id, other.id)
    press = await fake.press_button(message, "probe:reroll", other.id)
    reply = await press.wait_original()
    assert reply.content == f"re-rolled by {other.id}" and reply.ephemeral
    assert press.payload["data"]["component_type"] == 2


async def test_button_updates_its_message(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "button")
    message = await inter.wait_original()
    press = await fake.press_button(message, "probe:done", world.user_id)
    assert (await press.wait_response()).type == 7
    await fake.wait_for(lambda: message.content == "done", 5)
    assert message.components == [] and message.history[0]["content"] == "result"
    with pytest.raises(InteractionError):
        await fake.press_button(message, "probe:done", world.user_id)


async def test_edit_original_and_fetch_it(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "progress")
    followup = await inter.wait_followup(1)
    assert followup.content == "final 100%" and followup.ephemeral
    original = inter.original_message
    assert original is not None and original.content == "100%" and original.edit_count == 2
    assert [h["content"] for h in original.history] == ["0%", "50%"]
    assert fake.requests_to("GET", "/webhooks/{application_id}/{token}/messages/{message_id}")


async def test_default_member_permissions_and_member_permissions(world: World) -> None:
    fake = world.fake
    cmd = next(c for c in fake.commands_in(world.guild_id) if c.name == "admin")
    assert cmd.default_member_permissions == str(discord.Permissions(manage_guild=True).value)
    with pytest.raises(InteractionError):
        await fake.slash(world.guild_id, world.channel_id, world.user_id, "admin")
    overridden = await fake.slash(world.guild_id, world.channel_id, world.user_id, "admin", bypass_permissions=True)
    assert (await overridden.wait_original()).content == "allowed=False"
    boss = fake.add_user("boss")
    fake.add_member(world.guild_id, boss.id, permissions=discord.Permissions(manage_guild=True))
    inter = await fake.slash(world.guild_id, world.channel_id, boss.id, "admin")
    assert (await inter.wait_original()).content == "allowed=True"
    assert int(inter.payload["member"]["permissions"]) & discord.Permissions(manage_guild=True).value


async def test_direct_messages_and_closed_dms(world: World) -> None:
    fake = world.fake
    await fake.slash(world.guild_id, world.channel_id, world.user_id, "dm")
    await fake.wait_for(lambda: fake.dm_messages(world.user_id), 5)
    assert fake.dm_messages(world.user_id)[0].content == "hello in private"
    fake.block_dms(world.user_id)
    await fake.slash(world.guild_id, world.channel_id, world.user_id, "dm")
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert world.probe.errors[0].status == 403 and world.probe.errors[0].code == 50007


async def test_initial_response_with_a_file_is_multipart(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "attach")
    msg = await inter.wait_original()
    assert [(a.filename, a.data, a.content_type) for a in msg.attachments] == [("frame.png", PNG_1x1, "image/png")]
    (callback,) = fake.requests_to("POST", "/interactions/{interaction_id}/{token}/callback")
    assert callback.json["type"] == 4 and [p.name for p in callback.files] == ["files[0]"]


async def test_many_interactions_at_once(world: World) -> None:
    fake = world.fake
    inters = [await fake.slash(world.guild_id, world.channel_id, world.user_id, "ping") for _ in range(50)]
    await asyncio.wait_for(asyncio.gather(*(i.wait_response(10) for i in inters)), 15)
    assert all(i.response_latency is not None and i.response_latency < 3 for i in inters)
    assert len({i.original_message_id for i in inters}) == 50


# ------------------------------------------------------------------------------------- enforcement


async def test_three_second_deadline(world: World) -> None:
    fake = world.fake
    fake.initial_response_deadline = 0.2
    world.probe.slow_seconds = 0.4
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "slow")
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert inter.response is None and inter.rejected_callbacks == [10062]
    assert world.probe.errors[0].status == 404 and world.probe.errors[0].code == 10062


async def test_token_expiry_after_fifteen_minutes(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "later")
    await inter.wait_response()
    fake.clock.advance(15 * 60 + 1)
    world.probe.release.set()
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert world.probe.errors[0].status == 401 and world.probe.errors[0].code == 50027
    assert inter.followups == []


async def test_upload_limit_413(world: World) -> None:
    fake = world.fake
    fake.set_filesize_limit(world.guild_id, 1000)
    inter = await fake.slash(
        world.guild_id, world.channel_id, world.user_id, "post", options={"text": "video", "size": 1001}
    )
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert world.probe.errors[0].status == 413 and world.probe.errors[0].code == 40005
    assert inter.payload["attachment_size_limit"] == 1000
    assert [m.content for m in fake.channel_messages(world.channel_id, include_ephemeral=False)] == []


async def test_missing_permissions_403(world: World) -> None:
    fake = world.fake
    fake.forbid(world.channel_id, {"attach_files"})
    await fake.slash(world.guild_id, world.channel_id, world.user_id, "post", options={"text": "v", "size": 10})
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert world.probe.errors[-1].status == 403 and world.probe.errors[-1].code == 50013
    fake.forbid(world.channel_id, {"view_channel"})
    await fake.slash(world.guild_id, world.channel_id, world.user_id, "post", options={"text": "v"})
    await fake.wait_for(lambda: len(world.probe.errors) == 2, 5)
    assert world.probe.errors[-1].code == 50001
    # discord.py learnt about the overwrite through CHANNEL_UPDATE
    guild = world.bot.get_guild(world.guild_id)
    assert guild is not None
    channel = guild.get_channel(world.channel_id)
    assert channel is not None and not channel.permissions_for(guild.me).attach_files


async def test_deleted_channel_10003(world: World) -> None:
    fake = world.fake
    other = fake.add_channel(world.guild_id, "other")
    await world.bot.wait_for("guild_channel_create", check=lambda c: c.id == other.id, timeout=5)
    inter = await fake.slash(world.guild_id, other.id, world.user_id, "later")
    await inter.wait_response()
    fake.delete_channel(other.id)
    world.probe.release.set()
    await fake.wait_for(lambda: world.probe.errors, 5)
    assert world.probe.errors[0].code == 10003


async def test_rate_limit_429_is_retried_by_discord_py(world: World) -> None:
    fake = world.fake
    rule = fake.rate_limit(f"/channels/{world.channel_id}/messages", count=1, retry_after=0.05, method="POST")
    await fake.slash(world.guild_id, world.channel_id, world.user_id, "post", options={"text": "after 429"})
    await fake.wait_for(lambda: [m for m in fake.channel_messages(world.channel_id) if m.content == "after 429"], 5)
    posts = fake.requests_to("POST", "/channels/{channel_id}/messages")
    assert [p.status for p in posts] == [429, 200] and rule.hits == 1
    assert world.probe.errors == []


async def test_gateway_drop_resume_and_still_answering(world: World) -> None:
    fake = world.fake
    session = fake.gateway.newest
    assert session is not None
    await fake.drop_gateway()
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "ping")  # may be buffered
    await fake.wait_for(lambda: session.resumes >= 1 and session.connected, 10)
    assert (await inter.wait_response(5)).type == 4
    assert fake.identify_count == 1
    again = await fake.slash(world.guild_id, world.channel_id, world.user_id, "ping")
    assert (await again.wait_response(5)).type == 4


async def test_bot_restart_new_session_and_persistent_view(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    user = fake.add_user("u")
    fake.add_member(guild.id, user.id)
    with patch_discord_py(fake):
        bot, _, task = await start_bot(fake, guild.id)
        inter = await fake.slash(guild.id, channel.id, user.id, "button")
        message = await inter.wait_original()
        await stop_bot(bot, task)
        bot, _, task = await start_bot(fake, guild.id)
        try:
            press = await fake.press_button(message, "probe:reroll", user.id)
            assert (await press.wait_original()).content == f"re-rolled by {user.id}"
            assert fake.identify_count == 2 and len(fake.gateway.sessions) == 2
            assert fake.commands_in(guild.id)[0].id in {c.id for c in fake.commands_in(guild.id)}
        finally:
            await stop_bot(bot, task)


# ------------------------------------------------------------------------------- raw HTTP contract


async def test_raw_http_contract(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.rest_base}/users/@me") as resp:
            assert resp.status == 401
        async with http.get(f"{fake.rest_base}/users/@me", headers=auth) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            assert resp.headers["X-RateLimit-Bucket"]
        async with http.get(f"{fake.rest_base}/no/such/route", headers=auth) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 0
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("payload_json", json.dumps({"content": "file", "attachments": [{"id": 0, "filename": "a.png"}]}))
        form.add_field("files[0]", PNG_1x1, filename="a.png", content_type="application/octet-stream")
        async with http.post(f"{fake.rest_base}/channels/{channel.id}/messages", data=form, headers=auth) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["attachments"][0]["size"] == len(PNG_1x1)
        async with http.get(body["attachments"][0]["url"]) as resp:
            assert resp.headers["Content-Type"] == "image/png" and await resp.read() == PNG_1x1
        fake.fail_next("GET", r"^/channels/\d+$", status=502, code=0)
        async with http.get(f"{fake.rest_base}/channels/{channel.id}", headers=auth) as resp:
            assert resp.status == 502
        async with http.get(f"{fake.rest_base}/channels/{channel.id}", headers=auth) as resp:
            assert resp.status == 200
        fake.rate_limit("/channels/", 1, 1.5)
        async with http.get(f"{fake.rest_base}/channels/{channel.id}", headers=auth) as resp:
            assert resp.status == 429 and resp.headers["Via"] and (await resp.json())["retry_after"] == 1.5
    assert fake.requests[2].route == "/no/such/route" and fake.requests[2].status == 404
    msg = fake.channel_messages(channel.id)[0]
    assert msg.attachments[0].data == PNG_1x1


async def test_second_ack_and_old_message_edit_cap(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    user = fake.add_user("u")
    fake.add_member(guild.id, user.id)
    fake.require_gateway = False
    cmd = {"name": "x", "description": "x", "type": 1}
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        url = f"{fake.rest_base}/applications/{fake.application_id}/guilds/{guild.id}/commands"
        async with http.put(url, json=[cmd], headers=auth) as resp:
            assert resp.status == 200
        inter = await fake.slash(guild.id, channel.id, user.id, "x")
        cb = f"{fake.rest_base}/interactions/{inter.id}/{inter.token}/callback?with_response=true"
        async with http.post(cb, json={"type": 4, "data": {"content": "one"}}) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["resource"]["message"]["content"] == "one"
        async with http.post(cb, json={"type": 4, "data": {"content": "two"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
        async with http.post(
            f"{fake.rest_base}/channels/{channel.id}/messages", json={"content": "a"}, headers=auth
        ) as resp:
            mid = (await resp.json())["id"]
        fake.old_message_edit_limit = 1
        fake.clock.advance(3601)
        edit = f"{fake.rest_base}/channels/{channel.id}/messages/{mid}"
        async with http.patch(edit, json={"content": "b"}, headers=auth) as resp:
            assert resp.status == 200
        async with http.patch(edit, json={"content": "c"}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 30046
        async with http.post(
            f"{fake.rest_base}/users/@me/channels", json={"recipient_id": str(user.id)}, headers=auth
        ) as resp:
            dm = await resp.json()
        fake.block_dms(user.id)
        async with http.post(
            f"{fake.rest_base}/channels/{dm['id']}/messages", json={"content": "hi"}, headers=auth
        ) as resp:
            assert resp.status == 403 and (await resp.json())["code"] == 50007
    assert fake.message(int(mid)).history[0]["content"] == "a"  # type: ignore[union-attr]


# ------------------------------------------------------------------- as strict as Discord (issue 12)


def _row(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(buttons)}


def _button(custom_id: str, label: str = "ok") -> dict[str, Any]:
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label}


@pytest.mark.parametrize(("components", "why"), [
    ([_row(_button("a")) for _ in range(6)], "six action rows"),
    ([_row(*[_button(f"b{i}") for i in range(6)])], "six buttons in a row"),
    ([_row(_button("x" * 101))], "a custom_id of 101 characters"),
    ([_row(_button("a", "l" * 81))], "a label of 81 characters"),
    ([_row(_button("a"), _button("a"))], "a duplicated custom_id"),
    ([_row({"type": 2, "style": 5, "label": "go", "custom_id": "c"})], "a link button without url"),
    ([_button("a")], "a button outside an action row"),
])
async def test_components_are_validated_like_discord(fake: FakeDiscord, components: list[Any], why: str) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    auth = {"Authorization": f"Bot {fake.token}"}
    url = f"{fake.rest_base}/channels/{channel.id}/messages"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "hi", "components": components}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50035, why
        async with http.post(url, json={"content": "hi", "components": [_row(_button("a" * 100, "l" * 80))]},
                             headers=auth) as resp:
            assert resp.status == 200  # the limits themselves are allowed
            mid = (await resp.json())["id"]
        async with http.patch(f"{url}/{mid}", json={"components": components}, headers=auth) as resp:
            assert resp.status == 400, f"an edit with {why}"
        async with http.post(url, json={"embeds": [{"title": "t" * 257}]}, headers=auth) as resp:
            assert resp.status == 400
        async with http.post(url, json={"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]},
                             headers=auth) as resp:
            assert resp.status == 400  # 6,000 characters over all embeds


async def test_an_edit_that_leaves_nothing_is_refused(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    auth = {"Authorization": f"Bot {fake.token}"}
    url = f"{fake.rest_base}/channels/{channel.id}/messages"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "hi"}, headers=auth) as resp:
            mid = (await resp.json())["id"]
        async with http.patch(f"{url}/{mid}", json={"content": ""}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50006
        async with http.patch(f"{url}/{mid}", json={"content": "", "embeds": [{"title": "t"}]}, headers=auth) as resp:
            assert resp.status == 200
    assert fake.message(int(mid)).content == ""  # type: ignore[union-attr]


async def test_pings_are_computed_from_content_and_allowed_mentions(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    role = fake.add_role(guild.id, "mods")
    auth = {"Authorization": f"Bot {fake.token}"}
    url = f"{fake.rest_base}/channels/{channel.id}/messages"
    text = f"@everyone <@1> <@!2> <@&{role.id}> \\<@3>"
    cases = [
        (None, ({1, 2}, {role.id}, True)),  # no allowed_mentions: Discord parses everything
        ({"parse": []}, (set(), set(), False)),
        ({"parse": [], "users": ["2"]}, ({2}, set(), False)),
        ({"parse": ["roles", "everyone"]}, (set(), {role.id}, True)),
    ]
    async with aiohttp.ClientSession() as http:
        for allowed, (users, roles, everyone) in cases:
            body: dict[str, Any] = {"content": text}
            if allowed is not None:
                body["allowed_mentions"] = allowed
            async with http.post(url, json=body, headers=auth) as resp:
                payload = await resp.json()
            [pings] = fake.message(int(payload["id"])).pings  # type: ignore[union-attr]
            assert (set(pings.users), set(pings.roles), pings.everyone) == (users, roles, everyone), allowed
            assert payload["mention_everyone"] is everyone
        async with http.patch(f"{url}/{payload['id']}", json={"content": "<@7>"}, headers=auth) as resp:
            assert resp.status == 200  # an edit without allowed_mentions is parsed with the default
        assert set(fake.message(int(payload["id"])).pings[-1].users) == {7}  # type: ignore[union-attr]
        async with http.post(url, json={"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
                             headers=auth) as resp:
            assert resp.status == 400  # parse users and a users list are mutually exclusive


async def test_attachment_links_are_signed_and_expire(fake: FakeDiscord) -> None:
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    user = fake.add_user("u")
    fake.add_member(guild.id, user.id)
    message = fake.post_user_message(channel.id, user.id, "pic", attachments=[("a.png", PNG_1x1, "image/png")])
    url = fake.world.message_payload(message)["attachments"][0]["url"]
    assert "?ex=" in url and "&hm=" in url
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
        async with http.get(url.split("?")[0]) as resp:
            assert resp.status == 404  # unsigned
        async with http.get(url.replace("?ex=", "?ex=f")) as resp:
            assert resp.status == 404  # a later expiry the signature does not cover
        fake.clock.advance(fake.world.attachment_url_lifetime + 1)
        async with http.get(url) as resp:
            assert resp.status == 404 and "no longer available" in await resp.text()
        fresh = fake.world.message_payload(message)["attachments"][0]["url"]  # fetched again: signed anew
        async with http.get(fresh) as resp:
            assert resp.status == 200
    assert fake.expired_attachment_reads == [message.attachments[0].id] * 3


async def test_only_the_recipient_can_press_a_button_on_an_ephemeral_message(world: World) -> None:
    fake = world.fake
    bob = fake.add_user("bob")
    fake.add_member(world.guild_id, bob.id)
    inter = await fake.slash(world.guild_id, world.channel_id, world.user_id, "private-button")
    message = await inter.wait_original()
    assert message.ephemeral
    with pytest.raises(InteractionError, match="ephemeral"):
        await fake.press_button(message, "private:press", bob.id)
    pressed = await fake.press_button(message, "private:press", world.user_id)
    assert (await pressed.wait_response()).type in (6, 7)


# ----------------------------------------------------------------------------------------- subprocess

SUBPROCESS_BOT = """
import asyncio, os, discord, yarl
from discord import app_commands
discord.http.Route.BASE = os.environ["DISCORD_API_BASE"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
client = discord.Client(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
tree = app_commands.CommandTree(client)

@tree.command(name="ping", description="pong")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong from a subprocess")

async def setup_hook() -> None:
    guild = discord.Object(id=int(os.environ["GUILD_ID"]))
    tree.copy_global_to(guild=guild)
    await tree.sync(guild=guild)

client.setup_hook = setup_hook
client.run(os.environ["DISCORD_TOKEN"], log_handler=None)
"""


async def test_bot_in_a_subprocess_configured_by_env(fake: FakeDiscord) -> None:
    import os
    import sys

    guild = fake.add_guild("G")
    channel = fake.add_channel(guild.id, "c")
    user = fake.add_user("u")
    fake.add_member(guild.id, user.id)
    env = {**os.environ, **fake.env(), "GUILD_ID": str(guild.id)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SUBPROCESS_BOT, env=env)
    try:
        await fake.sync_wait_commands(20, guild_id=guild.id, names={"ping"})
        await fake.wait_ready(20)
        inter = await fake.slash(guild.id, channel.id, user.id, "ping")
        msg = await inter.wait_original(timeout=10)
        assert msg.content == "pong from a subprocess" and msg.allowed_mentions == {"parse": []}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
