"""Usage limits: what each one means, how values are written, and which value applies to a member.

Six limits, each optional ("unlimited" when unset):

    user_daily_images      images one member may make per day (in one server)
    user_monthly_budget    dollars one member may spend per month (in one server)
    user_max_jobs          running or queued jobs per member at once
    user_cooldown_seconds  seconds between two jobs of one member
    guild_daily_images     images the whole server may make per day
    guild_monthly_budget   dollars the whole server may spend per month

Where a value comes from, the later winning: the `.env` default (USER_DAILY_IMAGES, ...), the server's
override (`/limits set`), then role overrides for the four member limits (ROLE_<ROLE_ID>_DAILY_IMAGES
in `.env`, or `/limits role`): when a member has roles with an override, the most generous of those
applies, so a role can raise a limit (Patrons: 100 a day) or lower it (Guests: 2 a day).
Days and months start at midnight in LIMITS_TIMEZONE (default UTC).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .prices import money

UNLIMITED_WORDS = ("unlimited", "none", "off", "no limit")


@dataclass(frozen=True)
class LimitField:
    name: str
    label: str
    kind: str  # "images", "money", "jobs" or "seconds"
    env: str  # the .env variable of the default
    role_env: str | None  # suffix of ROLE_<ROLE_ID>_<suffix>, None when roles cannot override it

    def parse(self, raw: str) -> float | int | None:
        """A value as an admin or `.env` writes it; None means unlimited. Raises ValueError."""
        text = raw.strip().lower().lstrip("$")
        if text in UNLIMITED_WORDS:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number (or 'unlimited')") from None
        minimum = 1 if self.kind == "jobs" else 0
        if value < minimum or value != value or value == float("inf"):
            raise ValueError(f"{raw!r} must be at least {minimum} (or 'unlimited')")
        if self.kind in ("images", "jobs"):
            if value != int(value):
                raise ValueError(f"{raw!r} must be a whole number (or 'unlimited')")
            return int(value)
        return round(value, 6)

    def show(self, value: float | int | None) -> str:
        if value is None:
            return "unlimited"
        if self.kind == "money":
            return money(value)
        if self.kind == "seconds":
            return "none" if value == 0 else f"{value:g} s"
        return f"{value:g}"


FIELDS = {f.name: f for f in (
    LimitField("user_daily_images", "Member images per day", "images", "USER_DAILY_IMAGES", "DAILY_IMAGES"),
    LimitField("user_monthly_budget", "Member budget per month", "money", "USER_MONTHLY_BUDGET", "MONTHLY_BUDGET"),
    LimitField("user_max_jobs", "Member jobs at once", "jobs", "USER_MAX_JOBS", "MAX_JOBS"),
    LimitField("user_cooldown_seconds", "Member cooldown", "seconds", "USER_COOLDOWN_SECONDS", "COOLDOWN_SECONDS"),
    LimitField("guild_daily_images", "Server images per day", "images", "GUILD_DAILY_IMAGES", None),
    LimitField("guild_monthly_budget", "Server budget per month", "money", "GUILD_MONTHLY_BUDGET", None),
)}
MEMBER_FIELDS = tuple(name for name, f in FIELDS.items() if f.role_env)

Overrides = Mapping[str, "float | int | None"]  # field name -> value (None: unlimited); absent: inherit


@dataclass(frozen=True)
class Limits:
    user_daily_images: int | None = None
    user_monthly_budget: float | None = None
    user_max_jobs: int | None = 3
    user_cooldown_seconds: float | None = 0.0
    guild_daily_images: int | None = None
    guild_monthly_budget: float | None = None

    def get(self, name: str):
        return getattr(self, name)


def _more_generous(name: str, a, b):
    if a is None or b is None:
        return None
    return min(a, b) if name == "user_cooldown_seconds" else max(a, b)


def effective_limits(defaults: Limits, guild: Overrides, roles: Iterable[Overrides]) -> Limits:
    """The limits for one member: defaults, then the server's overrides, then the most generous of
    the member's role overrides (per limit, only among roles that set it)."""
    values = {name: guild.get(name, defaults.get(name)) for name in FIELDS}
    roles = list(roles)
    for name in MEMBER_FIELDS:
        chosen = [role[name] for role in roles if name in role]
        if chosen:
            best = chosen[0]
            for value in chosen[1:]:
                best = _more_generous(name, best, value)
            values[name] = best
    return Limits(**values)


@dataclass(frozen=True)
class Periods:
    day_start: float
    day_end: float
    month_start: float
    month_end: float


def periods(now: float, timezone: str = "UTC") -> Periods:
    """The current day and month in `timezone`, as unix times (ends are the next resets)."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = (day + timedelta(days=1, hours=3)).replace(hour=0)  # DST-safe
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return Periods(day.timestamp(), next_day.timestamp(), month.timestamp(), next_month.timestamp())


def load_role_limits(env: Mapping[str, str], problems: list[str]) -> dict[int, dict[str, float | int | None]]:
    """ROLE_<ROLE_ID>_<DAILY_IMAGES|MONTHLY_BUDGET|MAX_JOBS|COOLDOWN_SECONDS>=value (or unlimited)."""
    by_suffix = {f.role_env: f for f in FIELDS.values() if f.role_env}
    roles: dict[int, dict[str, float | int | None]] = {}
    for name in sorted(env):
        if not name.startswith("ROLE_") or not env[name].strip():
            continue
        role_id, _, suffix = name[len("ROLE_"):].partition("_")
        limit = by_suffix.get(suffix)
        if not role_id.isdigit() or limit is None:
            problems.append(f"{name}: expected ROLE_<ROLE_ID>_<{'|'.join(by_suffix)}>, e.g. "
                            "ROLE_123456789012345678_DAILY_IMAGES=50")
            continue
        try:
            roles.setdefault(int(role_id), {})[limit.name] = limit.parse(env[name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return roles
