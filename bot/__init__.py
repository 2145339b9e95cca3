"""sora-bot: a Discord bot that turns members' prompts into Sora 2 videos, paid for with server credits."""

__version__ = "0.1.0"
