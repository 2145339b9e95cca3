"""The Discord side's own wiring, with the real bot against the local Discord: persistent items live with the
cog that handles them (registered in cog_load, removed in cog_unload, found with get_cog when pressed)."""

from __future__ import annotations

from pathlib import Path

from bot.discord_app.items import SORA_COG, JobButton, JobButtonHandler, OfferButton, reroll_id
from tests.e2e.harness import accepted, make_world, private_reply, running_bot, video_posts


def registered(bot: object) -> bool:
    """Whether discord.py would route job buttons and confirmations to our items (its dynamic-item registry)."""
    store = bot._connection._view_store  # type: ignore[attr-defined]
    items = set(store._dynamic_items.values())
    return JobButton in items and OfferButton in items


async def test_re_roll_lives_with_its_cog_through_a_reload_and_leaves_with_it(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world, running_bot(world) as bot:
        assert bot.bot is not None
        client = bot.bot
        assert isinstance(client.get_cog(SORA_COG), JobButtonHandler) and registered(client)
        await accepted(await world.generate(prompt="a paper boat in the rain"))
        [job] = await bot.wait_finished(1)
        [post] = video_posts(world, job.id)

        await client.reload_extension("cogs.sora")  # what an operator's hot reload does
        assert registered(client)
        confirm = await private_reply(await world.fake.press_button(post, reroll_id(job.id), world.other.id))
        assert "100 credits" in confirm.content, confirm.content

        await client.unload_extension("cogs.sora")
        assert client.get_cog(SORA_COG) is None and not registered(client)
        await client.load_extension("cogs.sora")  # the bot stops as it runs: with its cogs
