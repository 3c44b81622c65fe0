"""Configuration of the bot, read once from the environment (python-dotenv fills it from `.env`).

`Config.from_env` is the only reader of os.environ for the bot; provider variables are parsed by
`providers.presets`. Every problem is reported as one line naming the variable.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .limits import FIELDS, Limits, load_role_limits
from .prices import PriceTable, load_price_table
from providers.base import ProviderConfig
from providers.env import parse_bool, parse_int, parse_seconds
from providers.errors import ConfigError
from providers.files import directory_problem

DISCORD_ATTACHMENT_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


@dataclass(frozen=True)
class Config:
    discord_token: str
    providers: list[ProviderConfig]
    data_dir: Path = Path("data")
    dev_guild_id: int | None = None
    # Conversations
    threads: bool = True  # start a thread on each result in a regular channel
    history_turns: int = 6  # earlier turns sent to the model with each request
    retention_days: int = 30  # conversations idle longer than this are deleted
    # Input limits
    max_prompt_chars: int = 2000
    max_input_images: int = 3
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000  # decompression-bomb guard
    attachment_hosts: tuple[str, ...] = DISCORD_ATTACHMENT_HOSTS
    # Load
    # Generations in flight at once, an overall ceiling: each provider adapts its own limit to what
    # its gateway takes (PROVIDER_<NAME>_MAX_CONCURRENT), within a memory budget for answers in flight.
    max_concurrent_jobs: int = 256
    max_inflight_mb: int = 1024  # about 16 4K answers at once
    user_max_jobs: int | None = 3  # running or queued jobs per member
    user_cooldown_seconds: float | None = 0.0
    # Quotas and spend (None: unlimited; see limits.py, pricing.py and .env.example)
    user_daily_images: int | None = None
    user_monthly_budget: float | None = None
    guild_daily_images: int | None = None
    guild_monthly_budget: float | None = None
    role_limits: Mapping[int, Mapping[str, float | int | None]] = field(default_factory=dict)
    limits_timezone: str = "UTC"  # days and months start at midnight here
    prices: PriceTable = field(default_factory=PriceTable)
    # Access
    allowed_guilds: frozenset[int] = field(default_factory=frozenset)
    allowed_channels: frozenset[int] = field(default_factory=frozenset)
    allowed_roles: frozenset[int] = field(default_factory=frozenset)
    allow_dms: bool = True
    admin_user_ids: frozenset[int] = field(default_factory=frozenset)
    # Behaviour
    status_interval: float = 3.0  # seconds between status line updates
    shutdown_grace: float = 30.0  # seconds running jobs get to finish on SIGTERM
    show_model_info: bool = True  # a small details line (provider, model, finish reason) on results
    log_channel_id: int | None = None  # one line per generation goes here, for moderation and accounting
    notify_after: float = 60.0  # a job that took longer DMs its member, if they asked (/settings notify)
    lag_probe: bool = False  # measure event-loop stalls (benchmark only)
    lag_probe_file: str | None = None  # with lag_probe: append every stall of 1 ms or more here
    # Operations
    database_url: str | None = None  # postgresql://... for several processes; unset: SQLite in data_dir
    metrics_port: int | None = None  # Prometheus /metrics on this port; unset: off
    health_interval: float = 60.0  # seconds between health lines in the log
    heartbeat_seconds: float = 10.0  # a process reports itself alive; silent 3x this long, it is gone
    shard_count: int | None = None  # the total number of shards; unset: one unsharded connection
    shard_ids: tuple[int, ...] | None = None  # the shards this process connects; unset: all of them

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, require_token: bool = True,
                 require_provider_keys: bool = True) -> Config:
        from providers.presets import load_provider_configs, provider_names

        problems: list[str] = []
        reader = _Reader(env, problems)
        token = env.get("DISCORD_TOKEN", "").strip()
        if require_token and not token:
            problems.append("DISCORD_TOKEN is not set: create a bot at https://discord.com/developers "
                            "and put its token in .env")
        try:
            providers = load_provider_configs(env, require_keys=require_provider_keys)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
            providers = []
        settings = cls(
            discord_token=token,
            providers=providers,
            data_dir=reader.directory("DATA_DIR", "data"),
            dev_guild_id=reader.int("DEV_GUILD_ID", None),
            threads=reader.bool("THREADS", True),
            history_turns=reader.int("HISTORY_TURNS", 6, minimum=0),
            retention_days=reader.int("RETENTION_DAYS", 30, minimum=1),
            max_prompt_chars=reader.int("MAX_PROMPT_CHARS", 2000, minimum=1),
            max_input_images=reader.int("MAX_INPUT_IMAGES", 3, minimum=1),
            max_image_bytes=reader.int("MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1024),
            max_image_pixels=reader.int("MAX_IMAGE_PIXELS", 50_000_000, minimum=1),
            attachment_hosts=reader.list("DISCORD_ATTACHMENT_HOSTS") or DISCORD_ATTACHMENT_HOSTS,
            max_concurrent_jobs=reader.int("MAX_CONCURRENT_JOBS", 256, minimum=1),
            max_inflight_mb=reader.int("MAX_INFLIGHT_MB", 1024, minimum=64),
            user_max_jobs=reader.limit("user_max_jobs", default=3),
            user_cooldown_seconds=reader.limit("user_cooldown_seconds", default=0.0),
            user_daily_images=reader.limit("user_daily_images"),
            user_monthly_budget=reader.limit("user_monthly_budget"),
            guild_daily_images=reader.limit("guild_daily_images"),
            guild_monthly_budget=reader.limit("guild_monthly_budget"),
            role_limits=load_role_limits(env, problems),
            limits_timezone=reader.timezone("LIMITS_TIMEZONE", "UTC"),
            prices=load_price_table(env, provider_names(env), problems),
            allowed_guilds=reader.ids("ALLOWED_GUILDS"),
            allowed_channels=reader.ids("ALLOWED_CHANNELS"),
            allowed_roles=reader.ids("ALLOWED_ROLES"),
            allow_dms=reader.bool("ALLOW_DMS", True),
            admin_user_ids=reader.ids("ADMIN_USER_IDS"),
            status_interval=reader.float("STATUS_INTERVAL_SECONDS", 3.0),
            shutdown_grace=reader.float("SHUTDOWN_GRACE_SECONDS", 30.0),
            show_model_info=reader.bool("SHOW_MODEL_INFO", True),
            log_channel_id=reader.int("LOG_CHANNEL_ID", None, minimum=1),
            notify_after=reader.float("NOTIFY_AFTER_SECONDS", 60.0),
            lag_probe=reader.bool("LAG_PROBE", False),
            lag_probe_file=env.get("LAG_PROBE_FILE", "").strip() or None,
            database_url=reader.database_url("DATABASE_URL"),
            metrics_port=reader.int("METRICS_PORT", None, minimum=1),
            health_interval=reader.float("HEALTH_LOG_SECONDS", 60.0),
            heartbeat_seconds=reader.float("HEARTBEAT_SECONDS", 10.0) or 10.0,
            **reader.shards(),
        )
        if settings.shard_ids is not None and settings.database_url is None:
            problems.append("SHARD_IDS needs DATABASE_URL=postgresql://... (the processes holding the other shards "
                            "share it); with SQLite one process connects every shard: leave SHARD_IDS unset")
        if problems:
            raise ConfigError("\n".join(problems))
        return settings

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bot.sqlite3"

    @property
    def default_limits(self) -> Limits:
        """The `.env` limits, before server and role overrides."""
        return Limits(self.user_daily_images, self.user_monthly_budget, self.user_max_jobs,
                      self.user_cooldown_seconds, self.guild_daily_images, self.guild_monthly_budget)


class _Reader:
    """Typed reads that record a one-line problem instead of raising on the first bad value."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env, self.problems = env, problems

    def _raw(self, name: str) -> str:
        return self.env.get(name, "").strip()

    def _parse(self, name: str, default, parse):
        raw = self._raw(name)
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name} {exc}, got {raw!r}")
            return default

    def int(self, name: str, default, *, minimum: int | None = None):
        return self._parse(name, default, lambda raw: parse_int(raw, minimum))

    def float(self, name: str, default: float) -> float:
        return self._parse(name, default, lambda raw: parse_seconds(raw, allow_zero=True))

    def bool(self, name: str, default: bool) -> bool:
        return self._parse(name, default, parse_bool)

    def limit(self, field_name: str, default=None):
        """A limit (see limits.FIELDS): empty or "unlimited" is None (no limit); `default` when unset."""
        limit = FIELDS[field_name]
        raw = self._raw(limit.env)
        if not raw:
            return None if limit.env in self.env else default
        try:
            return limit.parse(raw)
        except ValueError as exc:
            self.problems.append(f"{limit.env}: {exc}")
            return None

    def timezone(self, name: str, default: str) -> str:
        from zoneinfo import ZoneInfo

        raw = self._raw(name) or default
        try:
            ZoneInfo(raw)
        except (ValueError, OSError, LookupError):
            self.problems.append(f"{name} must be a time zone name like UTC or Europe/Berlin, got {raw!r}")
            return default
        return raw

    def directory(self, name: str, default: str) -> Path:
        """A directory the bot writes to: created if missing, refused in one line if it cannot be."""
        path = Path(self._raw(name) or default)
        problem = directory_problem(path)
        if problem:
            self.problems.append(f"{name}: {str(path)!r} cannot hold the bot's data: {problem}")
        return path

    def database_url(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw and not raw.startswith(("postgresql://", "postgres://")):
            self.problems.append(f"{name} must be a postgresql:// URL (unset: SQLite under DATA_DIR)")
            return None
        return raw or None

    def shards(self) -> dict:
        """SHARD_COUNT and SHARD_IDS: each id below the count; ids without a count make no sense."""
        count = self.int("SHARD_COUNT", None, minimum=1)
        ids = sorted(self.ids("SHARD_IDS"))
        if ids and count is None:
            self.problems.append("SHARD_IDS needs SHARD_COUNT (the total number of shards of the bot)")
        elif count is not None and any(i >= count for i in ids):
            self.problems.append(f"SHARD_IDS must be below SHARD_COUNT={count} (shards are numbered from 0), "
                                 f"got {','.join(map(str, ids))}")
        return {"shard_count": count, "shard_ids": tuple(ids) or None}

    def list(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self._raw(name).split(",") if part.strip())

    def ids(self, name: str) -> frozenset[int]:
        ids = set()
        for part in self.list(name):
            if part.isdigit():
                ids.add(int(part))
            else:
                self.problems.append(f"{name} must be a comma-separated list of Discord ids, got {part!r}")
        return frozenset(ids)
