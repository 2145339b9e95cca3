"""Settings from the environment and `.env`, checked once at start-up so mistakes stop the bot early and clearly."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse, urlsplit

from dotenv import dotenv_values

T = TypeVar("T")

DEFAULT_API_BASE = "https://api.aivideoapi.ai"
DEFAULT_DATABASE_PATH = Path("data/sora-bot.db")
DEFAULT_VIDEO_DIR = Path("data/videos")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A missing or malformed setting; its text is the one line the operator reads."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name


class Secret:
    """A string that never shows itself in `repr`, `str` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot reads from its environment; secrets are wrapped in `Secret`."""

    discord_token: Secret | None
    sora_api_key: Secret
    sora_api_base: str = DEFAULT_API_BASE
    database_path: Path = DEFAULT_DATABASE_PATH
    database_url: Secret | None = None  # postgresql://user:password@host:port/db; a secret (it holds a password)
    video_dir: Path = DEFAULT_VIDEO_DIR
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    callback_public_url: str | None = None
    callback_host: str = "0.0.0.0"  # noqa: S104 - the callback server must be reachable by the upstream
    callback_port: int = 8080
    dev_guild_id: int | None = None
    max_running_jobs: int = 20
    max_video_bytes: int = 512 * 1024 * 1024
    download_timeout: float = 600.0
    log_level: str = "INFO"
    log_format: str = "text"
    time_scale: float = 1.0  # shrinks poll and retry waits for tests and demos; 1 in production
    job_timeout: float = 43200.0  # a submitted task still unfinished this long is given up and refunded
    upstream_timeout: float | None = None  # UPSTREAM_TIMEOUT: one bound for every video API call (else per call)
    status_read_failures: int = 12  # STATUS_READ_FAILURES: failed status reads in a row before a job is refunded
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # /metrics and /healthz are served only when set
    sentry_dsn: Secret | None = None
    shard_count: int | None = None  # SHARD_COUNT: the bot's total shards; None: Discord's recommendation
    shard_ids: tuple[int, ...] | None = None  # SHARD_IDS: the shards this process connects; None: all of them
    job_lease_seconds: float = 30.0  # JOB_LEASE_SECONDS: a process's claim on a job lasts this long unrenewed
    process_name: str | None = None  # SORA_PROCESS_NAME: this process in metrics, Sentry and job leases

    @property
    def database(self) -> str | Path:
        """What storage.Database.open() is given: DATABASE_URL when set (DATABASE_PATH is then ignored)."""
        return self.database_url.get_secret_value() if self.database_url is not None else self.database_path

    @property
    def database_label(self) -> str:
        """Where the data lives, for messages and logs: the file, or the URL without user and password."""
        return str(self.database_path) if self.database_url is None else redact_database_url(
            self.database_url.get_secret_value())


DATABASE_URL_SCHEMES = ("postgresql", "postgres")


def redact_database_url(url: str) -> str:
    """`postgresql://host:port/db`: the URL without its user and password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def _database_url(name: str, value: str) -> Secret:
    # The value holds a password: the message names the variable and the problem, never the value.
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(name, "is not a valid URL (check the host and port)") from None
    if parts.scheme not in DATABASE_URL_SCHEMES:
        raise ConfigError(name, "must start with postgresql:// (e.g. postgresql://user:password@host:5432/sorabot)")
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(name, "must name a host and a database (postgresql://user:password@host:5432/DBNAME)")
    return Secret(value)


def load_database_target(env: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
                         ) -> tuple[Secret | None, Path]:
    """(DATABASE_URL, DATABASE_PATH) alone, for the `db` commands, which need no Discord token or API key.

    Raises:
        ConfigError: DATABASE_URL is set but malformed.
    """
    values = read_environment(env, dotenv)
    url = (values.get("DATABASE_URL") or "").strip()
    path = (values.get("DATABASE_PATH") or "").strip()
    return (_database_url("DATABASE_URL", url) if url else None), Path(path or DEFAULT_DATABASE_PATH)


def _url(name: str, value: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(
            name, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)} (got {value!r})"
        )
    return value.rstrip("/")


def _int(name: str, value: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(name, f"must be a whole number (got {value!r})") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(name, f"must be {bound} (got {number})")
    return number


def _float(name: str, value: str, *, minimum: float = 0.0) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(name, f"must be a number (got {value!r})") from None
    if number < minimum:
        raise ConfigError(name, f"must be at least {minimum} (got {number})")
    return number


MAX_SHARDS = 65_536


def _shards(count_raw: str | None, ids_raw: str | None) -> tuple[int | None, tuple[int, ...] | None]:
    """(SHARD_COUNT, SHARD_IDS): ids need the count (a guild's shard is `(guild_id >> 22) % count`, so every
    process must agree on it), each id in 0..count-1 once; the count alone means every shard here."""
    count = None if count_raw is None else _int("SHARD_COUNT", count_raw, minimum=1, maximum=MAX_SHARDS)
    if ids_raw is None:
        return count, None
    if count is None:
        raise ConfigError("SHARD_IDS", "needs SHARD_COUNT too (the bot's total number of shards, e.g. 4)")
    ids: list[int] = []
    for part in ids_raw.split(","):
        shard = _int("SHARD_IDS", part, minimum=0, maximum=count - 1) if part.strip() else None
        if shard is None or shard in ids:
            raise ConfigError("SHARD_IDS", f"must list different shard numbers from 0 to {count - 1}, separated "
                                           f"by commas (got {ids_raw!r})")
        ids.append(shard)
    return count, tuple(ids)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    upper = value.strip()
    matches = [c for c in choices if c.lower() == upper.lower()]
    if not matches:
        raise ConfigError(name, f"must be one of {', '.join(choices)} (got {value!r})")
    return matches[0]


def read_environment(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> dict[str, str]:
    """Merge `.env` under the real environment: a variable set in the shell wins over the file."""
    merged: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    dotenv: Path | None = Path(".env"),
    require_discord: bool = True,
) -> Settings:
    """Build and check the settings.

    Args:
        env: variables to read instead of `os.environ` (tests).
        dotenv: the `.env` file to read first, or None.
        require_discord: False for commands that never talk to Discord (`generate`, `check` of the key).

    Raises:
        ConfigError: the first missing or malformed variable, named.
    """
    values = read_environment(env, dotenv)

    def get(name: str) -> str | None:
        value = values.get(name)
        return value.strip() if value is not None and value.strip() else None

    def opt(name: str, parse: Callable[[str, str], T], default: T) -> T:
        raw = get(name)
        return default if raw is None else parse(name, raw)

    token = get("DISCORD_TOKEN")
    if token is None and require_discord:
        raise ConfigError("DISCORD_TOKEN", "is missing: set it to your bot's token from the Discord developer portal")
    if token is not None and (len(token) < 20 or " " in token):
        raise ConfigError("DISCORD_TOKEN", "does not look like a Discord bot token (copy it again from the portal)")

    key = get("SORA_API_KEY")
    if key is None:
        raise ConfigError("SORA_API_KEY", "is missing: set it to your video API key (it starts with sk-)")
    if not key.startswith("sk-") or len(key) < 6:
        raise ConfigError("SORA_API_KEY", "must start with sk- (check the key in your provider's dashboard)")

    callback_url = opt("CALLBACK_PUBLIC_URL", _url, None)
    shard_count, shard_ids = _shards(get("SHARD_COUNT"), get("SHARD_IDS"))
    return Settings(
        discord_token=Secret(token) if token else None,
        sora_api_key=Secret(key),
        sora_api_base=opt("SORA_API_BASE", _url, DEFAULT_API_BASE),
        database_path=Path(get("DATABASE_PATH") or DEFAULT_DATABASE_PATH),
        database_url=opt("DATABASE_URL", _database_url, None),
        video_dir=Path(get("VIDEO_DIR") or DEFAULT_VIDEO_DIR),
        discord_api_base=opt("DISCORD_API_BASE", _url, None),
        discord_gateway_url=opt("DISCORD_GATEWAY_URL", lambda n, v: _url(n, v, schemes=("ws", "wss")), None),
        callback_public_url=callback_url,
        callback_host=get("CALLBACK_HOST") or "0.0.0.0",  # noqa: S104
        callback_port=opt("CALLBACK_PORT", lambda n, v: _int(n, v, minimum=1, maximum=65535), 8080),
        dev_guild_id=opt("DEV_GUILD_ID", lambda n, v: _int(n, v, minimum=1), None),
        max_running_jobs=opt("MAX_RUNNING_JOBS", lambda n, v: _int(n, v, minimum=1, maximum=10_000), 20),
        max_video_bytes=opt("MAX_VIDEO_MB", lambda n, v: _int(n, v, minimum=1, maximum=4096), 512) * 1024 * 1024,
        download_timeout=opt("DOWNLOAD_TIMEOUT", lambda n, v: _float(n, v, minimum=1.0), 600.0),
        log_level=opt("LOG_LEVEL", lambda n, v: _choice(n, v.upper(), LOG_LEVELS), "INFO"),
        log_format=opt("LOG_FORMAT", lambda n, v: _choice(n, v, ("text", "json")), "text"),
        time_scale=opt("SORA_TIME_SCALE", lambda n, v: _float(n, v, minimum=0.0001), 1.0),
        job_timeout=opt("JOB_TIMEOUT", lambda n, v: _float(n, v, minimum=1.0), 43200.0),
        upstream_timeout=opt("UPSTREAM_TIMEOUT", lambda n, v: _float(n, v, minimum=0.1), None),
        status_read_failures=opt("STATUS_READ_FAILURES", lambda n, v: _int(n, v, minimum=1, maximum=1000), 12),
        metrics_host=get("METRICS_HOST") or "127.0.0.1",
        metrics_port=opt("METRICS_PORT", lambda n, v: _int(n, v, minimum=1, maximum=65535), None),
        sentry_dsn=opt("SENTRY_DSN", lambda n, v: Secret(_url(n, v)), None),
        shard_count=shard_count,
        job_lease_seconds=opt("JOB_LEASE_SECONDS", lambda n, v: _float(n, v, minimum=1.0), 30.0),
        process_name=get("SORA_PROCESS_NAME"),
        shard_ids=shard_ids,
    )
