"""Names vulture (`make test`, `[tool.vulture]` in pyproject.toml) would call dead, and why they are not.

Each line names an attribute the way vulture's own `--make-whitelist` does; this file is read, never run.
Anything else vulture reports is dead: delete it, or wire it up, rather than adding it here without a reason.
"""

# Called by discord.py by name: hooks, commands registered by decorator, persistent items, module attributes.
_.setup_hook  # commands.Bot calls it once while logging in
_.interaction_check  # CommandTree / Cog / View hook
_.on_error  # CommandTree / Modal hook
_.on_submit  # Modal hook
_.from_custom_id  # DynamicItem hook: rebuilds the Re-roll button from its custom_id after a restart
_.on_shard_connect  # AutoShardedBot events: the gateway table /healthz reads, per shard
_.on_shard_resumed
_.on_shard_disconnect
_.before_identify_hook  # Client hook before each IDENTIFY: paced by Discord's max_concurrency buckets
_.on_interaction  # Cog listener: the submits of our forms, which discord.py keeps no copy of
_.cog_load  # Cog hooks
_.cog_unload
_.help  # /sora help, registered by @app_commands.command
_.quota_set  # /sora-admin …, registered by @group.command
_.quota_add
_.quota_show
_.config_show
_.config_defaults
_.config_refill
_.config_limits
_.config_channels
_.config_words
_.tiers_set
_.tiers_remove
_.tiers_show
_.on_guild_role_delete  # Cog listener: a deleted role's tier goes with it
_.delete_member
_.delete_server
_.BASE  # discord.http.Route.BASE, read by discord.py
_.DEFAULT_GATEWAY  # discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, read by discord.py

# Read by the standard library or a driver by name.
_.required  # argparse subparsers
_.msg  # logging.LogRecord, read by the formatter
_.row_factory  # aiosqlite.Connection

# Columns of a stored row: every field of the dataclass is a column, read by SELECT * and job_from_row().
_.seq
_.finished_at

# Observable state of a small class, read by its own tests (and by the metrics gauges, as they get wired).
_.running  # bot.jobs.slots.the slot cache
_.waiting
_.running_in
_.holds
_.wait_idle  # bot.jobs.runner.JobRunner: tests and benchmarks wait for the runner to be idle

# The simulator is a stand-in for the upstream served to tests: what tests read of it.
_.at  # bot.simulator.state.RecordedRequest / CallbackAttempt
_.authorized
_.requests_to

# Test-facing by design: the schema version this code writes is what the migration tests and `db upgrade`'s
# tests compare a database against.
_.latest_version  # storage.migrate

# bot/ops: operations building blocks (metrics, /healthz, loop lag, Sentry) not wired into the bot yet.
_.watch_loop_lag
_.credits_moved
_.job_finished
_.delivered
_.upstream_call
_.discord_refused
_.set_jobs
_.init_sentry
_.OpsServer
