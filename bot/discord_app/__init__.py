"""The Discord side of the bot: the client, its one error path, command sync, the job notifier, message text
and the persistent items. It may import the domain (bot.*) and storage, never cogs; cogs import it."""
