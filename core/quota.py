"""Admission and accounting for generations.

`QuotaKeeper.admit` checks a member's load (jobs at once: their reservations not yet charged or
released; cooldown: since their latest reservation) and their quotas (daily images, monthly budget;
the server's too) in one store transaction that also reserves the request's images and estimated
cost, so two requests at once, in any processes sharing the store, cannot both take the last unit.
A job then `charge`s its reservation with the real cost, or `settle`s it uncharged when it failed,
was refused, cancelled or never started. Over a limit, `LimitError` carries a sentence saying which limit and
when it resets (as a Discord timestamp, shown in the member's own time zone).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from store import CoolingDown, MemberBusy, QuotaCheck, QuotaExceeded, QuotaUse, Store, UsageEntry

from .config import Config
from .errors import InputError
from .limits import FIELDS, Limits, Periods, effective_limits, periods
from .prices import money

log = logging.getLogger(__name__)


class LimitError(InputError):
    """Over a limit; the message says which one and when it resets."""


@dataclass(eq=False)
class Reservation:
    usage_id: int
    user_id: int
    guild_id: int  # 0 in direct messages
    provider: str
    model: str
    images: int
    estimate: float
    charged: bool = False
    settled: bool = False  # charged or released: no longer the member's job in progress


@dataclass(frozen=True)
class QuotaStatus:
    """A member's limits and what they have used, for /usage and /help."""

    limits: Limits
    periods: Periods
    member_day: QuotaUse
    member_month: QuotaUse
    guild_day: QuotaUse | None  # None in direct messages
    guild_month: QuotaUse | None


def when(timestamp: float) -> str:
    """A reset time as Discord renders it for each reader: "in 5 hours (at 00:00)"."""
    return f"<t:{int(timestamp)}:R> (<t:{int(timestamp)}:f>)"


def typed_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Stored REALs back to whole numbers for the image and job limits."""
    out = {}
    for name, value in overrides.items():
        if name in FIELDS:
            whole = FIELDS[name].kind in ("images", "jobs") and value is not None
            out[name] = int(value) if whole else value
    return out


class QuotaKeeper:
    def __init__(self, *, store: Store, config: Config, providers: Any) -> None:
        self.store, self.config, self.providers = store, config, providers
        self._tasks: set[asyncio.Task] = set()  # releases not yet written
        self._releasing: dict[int, set[asyncio.Task]] = {}  # the same, by member

    # -- limits --------------------------------------------------------------------------------

    async def limits_for(self, user, guild_id: int | None) -> Limits:
        """The member's limits in a server: .env defaults, server overrides, then role overrides."""
        config = self.config
        overrides = await self.store.limit_overrides(guild_id) if guild_id else {}
        roles = []
        for role in getattr(user, "roles", []) if guild_id else []:
            server_role = typed_overrides(overrides.get(f"role:{role.id}", {}))
            merged = {**config.role_limits.get(role.id, {}), **server_role}
            if merged:
                roles.append(merged)
        return effective_limits(config.default_limits, typed_overrides(overrides.get("guild", {})), roles)

    def window(self) -> Periods:
        """Today and this month in LIMITS_TIMEZONE."""
        return periods(time.time(), self.config.limits_timezone)

    async def status(self, user, guild_id: int | None) -> QuotaStatus:
        store, guild = self.store, guild_id or 0
        limits = await self.limits_for(user, guild_id)
        now = self.window()
        return QuotaStatus(
            limits, now,
            await store.quota_use(guild, user.id, now.day_start),
            await store.quota_use(guild, user.id, now.month_start),
            await store.quota_use(guild, None, now.day_start) if guild else None,
            await store.quota_use(guild, None, now.month_start) if guild else None)

    def price_for(self, provider: str | None, resolution: str | None) -> tuple[str, str, float]:
        """(provider, model, price per image) for a request's provider choice (None: the default)."""
        router = self.providers
        name = provider if provider in router.names else router.names[0]
        model = router.get(name).config.model
        return name, model, self.config.prices.per_image(name, model, resolution)

    # -- admission -----------------------------------------------------------------------------

    async def admit(self, user, guild_id: int | None, kind: str, options, *,
                    conversation_id: int | None = None) -> Reservation:
        """Reserve a generation for `user`, or raise LimitError saying why not and until when. Jobs at
        once and the cooldown are read from the reservations of every process sharing the store."""
        guild = guild_id or 0
        limits = await self.limits_for(user, guild_id)
        provider, model, _price = self.price_for(options.provider, options.resolution)
        images = max(1, int(options.count or 1))
        estimate = self.config.prices.estimate(provider, model, options.resolution, images)
        window = self.window()
        await self._released(user.id)  # a job this member just finished no longer counts
        try:
            usage_id = await self.store.reserve_usage(
                UsageEntry(guild, user.id, kind, provider, model, options.resolution, images, estimate,
                           conversation_id), self._checks(limits, guild, user.id, window),
                max_active=limits.user_max_jobs, cooldown=limits.user_cooldown_seconds or 0.0)
        except MemberBusy as exc:
            raise LimitError(f"You already have {exc.active} images in progress; wait for one to finish "
                             f"(the limit is {exc.limit} at a time).") from None
        except CoolingDown as exc:
            raise LimitError(f"Slow down a little: you can start another image in {exc.wait:.0f} s.") from None
        except QuotaExceeded as exc:
            raise LimitError(_exceeded_text(exc, images, estimate, window)) from None
        return Reservation(usage_id, user.id, guild, provider, model, images, estimate)

    @staticmethod
    def _checks(limits: Limits, guild: int, user_id: int, window: Periods) -> list[QuotaCheck]:
        wanted = [
            ("user_daily_images", user_id, window.day_start), ("user_monthly_budget", user_id, window.month_start),
            ("guild_daily_images", None, window.day_start), ("guild_monthly_budget", None, window.month_start)]
        checks = []
        for name, who, since in wanted:
            value = limits.get(name)
            if value is None or (who is None and not guild):
                continue
            money_limit = FIELDS[name].kind == "money"
            checks.append(QuotaCheck(name, guild, who, since, max_images=None if money_limit else value,
                                     max_cost=value if money_limit else None))
        return checks

    # -- accounting ----------------------------------------------------------------------------

    async def charge(self, job, result) -> float | None:
        """Record the real cost of a finished generation (from the price table or token usage) and
        return it. A database error is logged, never raised: the member still gets the image."""
        try:
            return await self._charge(job, result)
        except Exception:
            log.exception("could not record the cost of job %s", job.id)
            return None

    async def _charge(self, job, result) -> float:
        spec, reservation = job.spec, getattr(job, "reservation", None)
        resolution = spec.options.resolution
        cost = self.config.prices.cost(result.provider, result.model, resolution, len(result.images),
                                             result.usage)
        store = self.store
        conversation_id = spec.conversation.id if spec.conversation else None
        if reservation is None:  # started without admission: still recorded
            usage_id = await store.reserve_usage(UsageEntry(
                spec.guild_id or 0, spec.user.id, spec.kind, result.provider, result.model, resolution,
                len(result.images), cost, conversation_id))
        else:
            usage_id = reservation.usage_id
        usage = result.usage or {}
        await store.charge_usage(
            usage_id, job_id=job.id, provider=result.provider, model=result.model, resolution=resolution,
            images=len(result.images), cost=cost, input_tokens=_tokens(usage.get("input_tokens")),
            output_tokens=_tokens(usage.get("output_tokens")), conversation_id=conversation_id)
        if reservation is not None:  # only once written: else settle releases it, or it would hold a job slot
            reservation.charged = True
        log.info("job %s: charged %s for %d image(s) to member %s", job.id, money(cost), len(result.images),
                 spec.user.id)
        return cost

    def settle(self, reservation: Reservation | None, status: str, *, job_id: str | None = None) -> None:
        """The job is over (or never started): uncharged, its reservation is released (which frees the
        member's job slot; a charged one freed it when charged)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        if not reservation.charged:
            task = asyncio.get_running_loop().create_task(self._release(reservation, status, job_id))
            self._tasks.add(task)
            self._releasing.setdefault(reservation.user_id, set()).add(task)
            task.add_done_callback(lambda t, user_id=reservation.user_id: self._forget(user_id, t))

    def _forget(self, user_id: int, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        pending = self._releasing.get(user_id)
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._releasing[user_id]

    async def _released(self, user_id: int) -> None:
        """Wait for this process's pending releases of the member's reservations."""
        pending = self._releasing.get(user_id)
        if pending:
            await asyncio.gather(*list(pending), return_exceptions=True)

    async def _release(self, reservation: Reservation, status: str, job_id: str | None) -> None:
        try:
            await self.store.release_usage(reservation.usage_id, status, job_id=job_id)
        except Exception:
            log.exception("could not release usage reservation %s", reservation.usage_id)

    async def drain(self) -> None:
        """Wait for pending releases (at shutdown, before the database closes)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _tokens(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _exceeded_text(exc: QuotaExceeded, images: int, estimate: float, window: Periods) -> str:
    check, used = exc.check, exc.used
    daily = check.name.endswith("daily_images")
    reset = when(window.day_end if daily else window.month_end)
    whose = "your" if check.user_id is not None else "this server's"
    if daily:
        limit, left = int(check.max_images), max(0, int(check.max_images) - used.images)
        if limit == 0:
            return f"Image generation is switched off for {'you' if check.user_id else 'this server'} here."
        if left > 0:
            return (f"This needs {images} images but {left} of {whose} {limit} images for today "
                    f"{'is' if left == 1 else 'are'} left: ask for fewer, or wait for the reset {reset}.")
        return f"You have used all {limit} of {whose} images for today. The quota resets {reset}." \
            if check.user_id is not None else \
            f"This server has used all {limit} of its images for today. The quota resets {reset}."
    budget, left = float(check.max_cost), max(0.0, float(check.max_cost) - used.cost)
    if left >= 0.0005:
        return (f"This costs about {money(estimate)} and {money(left)} of {whose} {money(budget)} monthly "
                f"budget is left. Try a lower resolution, or wait for the reset {reset}.")
    subject = "You have" if check.user_id is not None else "This server has"
    return f"{subject} spent all of {whose} {money(budget)} monthly budget. It resets {reset}."
