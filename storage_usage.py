"""Storage for usage and limits: the usage ledger with atomic quota reservations, quota resets,
server and role limit overrides, and members' default settings.

A mixin of `storage.Storage` (it uses `self._db` and `self._write`), so cogs still see one storage
interface. `guild_id` is 0 for direct messages in these tables. Times are unix seconds.

Every generation is one `usage` row. Admission inserts it as `reserved` (the requested images and
the estimated cost) inside one BEGIN IMMEDIATE transaction that first sums what the quota windows
already hold, so two admissions can never both take the last unit. The row then becomes `charged`
(the real images and cost), or `failed` / `refused` / `cancelled` / `interrupted` / `released` with
nothing charged. Quotas count `reserved` and `charged` rows since the period start (or the member's
last quota reset, whichever is later).
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    guild_id INTEGER NOT NULL,          -- 0 in direct messages
    user_id INTEGER NOT NULL,
    job_id TEXT,
    conversation_id INTEGER,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,               -- reserved, charged, failed, refused, cancelled, interrupted, released
    provider TEXT,
    model TEXT,
    resolution TEXT,
    requested_images INTEGER NOT NULL,
    estimated_cost REAL NOT NULL,
    images INTEGER NOT NULL,            -- what counts against quotas: requested while reserved, real once charged
    cost REAL NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_member ON usage(guild_id, user_id, created_at);
CREATE INDEX IF NOT EXISTS usage_by_guild ON usage(guild_id, created_at);
CREATE INDEX IF NOT EXISTS usage_by_status ON usage(status);
CREATE TABLE IF NOT EXISTS quota_resets (
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    reset_at REAL NOT NULL,
    reset_by INTEGER,
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS limit_overrides (
    guild_id INTEGER NOT NULL,
    scope TEXT NOT NULL,                -- 'guild', or 'role:<role id>'
    name TEXT NOT NULL,                 -- a limits.FIELDS name
    value REAL,                         -- NULL: unlimited
    updated_by INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (guild_id, scope, name)
);
CREATE TABLE IF NOT EXISTS member_settings (
    user_id INTEGER PRIMARY KEY,
    settings TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
"""

COUNTED = ("reserved", "charged")
NOT_CHARGED = ("failed", "refused", "cancelled", "interrupted", "released")


@dataclass(frozen=True)
class UsageEntry:
    guild_id: int
    user_id: int
    kind: str
    provider: str
    model: str
    resolution: str | None
    images: int
    cost: float
    conversation_id: int | None = None


@dataclass(frozen=True)
class QuotaCheck:
    """One window to check at admission: a member's (user_id set) or the whole server's (None)."""

    name: str
    guild_id: int
    user_id: int | None
    since: float
    max_images: int | None = None
    max_cost: float | None = None


@dataclass(frozen=True)
class QuotaUse:
    images: int
    cost: float


class QuotaExceeded(Exception):
    def __init__(self, check: QuotaCheck, used: QuotaUse) -> None:
        super().__init__(check.name)
        self.check, self.used = check, used


@dataclass(frozen=True)
class UsageTotals:
    images: int  # charged images
    cost: float  # charged cost
    jobs: int  # charged generations
    not_charged: int  # failed, refused, cancelled or interrupted generations


class UsageStorage:
    """Mixed into Storage: provides `_db` (aiosqlite, row factory Row) and `_write`."""

    _db: Any  # and `_write(statements=None, fn=None)`, both from Storage

    # -- quota reservations ------------------------------------------------------------------------

    async def reserve_usage(self, entry: UsageEntry, checks: Sequence[QuotaCheck] = ()) -> int:
        """Insert a reservation if every check still has room for it, all in one transaction;
        raises QuotaExceeded naming the first check that has not. Returns the usage row id."""

        async def reserve(db):
            for check in checks:
                used = await self._quota_use(db, check.guild_id, check.user_id, check.since)
                if (check.max_images is not None and used.images + entry.images > check.max_images) or \
                        (check.max_cost is not None and used.cost + entry.cost > check.max_cost + 1e-9):
                    raise QuotaExceeded(check, used)
            now = time.time()
            cur = await db.execute(
                "INSERT INTO usage (guild_id, user_id, conversation_id, kind, status, provider, model, resolution,"
                " requested_images, estimated_cost, images, cost, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.guild_id, entry.user_id, entry.conversation_id, entry.kind, entry.provider, entry.model,
                 entry.resolution, entry.images, entry.cost, entry.images, entry.cost, now, now))
            return cur.lastrowid

        return await self._write(fn=reserve)

    async def quota_use(self, guild_id: int, user_id: int | None, since: float) -> QuotaUse:
        """What counts against a quota window now (after the member's last quota reset)."""
        return await self._quota_use(self._db, guild_id, user_id, since)

    @staticmethod
    async def _quota_use(db, guild_id: int, user_id: int | None, since: float) -> QuotaUse:
        marks = ",".join("?" * len(COUNTED))
        if user_id is None:
            sql = (f"SELECT COALESCE(SUM(images), 0), COALESCE(SUM(cost), 0) FROM usage"
                   f" WHERE guild_id = ? AND status IN ({marks}) AND created_at >= ?")
            params: tuple = (guild_id, *COUNTED, since)
        else:
            sql = (f"SELECT COALESCE(SUM(images), 0), COALESCE(SUM(cost), 0) FROM usage"
                   f" WHERE guild_id = ? AND user_id = ? AND status IN ({marks}) AND created_at >= MAX(?,"
                   " COALESCE((SELECT reset_at FROM quota_resets WHERE guild_id = ? AND user_id = ?), 0))")
            params = (guild_id, user_id, *COUNTED, since, guild_id, user_id)
        async with db.execute(sql, params) as cur:
            images, cost = await cur.fetchone()
        return QuotaUse(int(images), float(cost))

    async def charge_usage(self, usage_id: int, *, job_id: str | None, provider: str, model: str,
                           resolution: str | None, images: int, cost: float, input_tokens: int | None = None,
                           output_tokens: int | None = None, conversation_id: int | None = None) -> None:
        await self._write([(
            "UPDATE usage SET status = 'charged', job_id = COALESCE(?, job_id), provider = ?, model = ?,"
            " resolution = ?, images = ?, cost = ?, input_tokens = ?, output_tokens = ?,"
            " conversation_id = COALESCE(?, conversation_id), updated_at = ? WHERE id = ?",
            (job_id, provider, model, resolution, images, cost, input_tokens, output_tokens, conversation_id,
             time.time(), usage_id))])

    async def release_usage(self, usage_id: int, status: str, *, job_id: str | None = None) -> None:
        """The generation failed or never ran: keep the record, charge nothing."""
        if status not in NOT_CHARGED:
            raise ValueError(f"not a release status: {status}")
        await self._write([(
            "UPDATE usage SET status = ?, job_id = COALESCE(?, job_id), images = 0, cost = 0, updated_at = ?"
            " WHERE id = ? AND status = 'reserved'", (status, job_id, time.time(), usage_id))])

    async def release_stale_reservations(self, status: str = "interrupted") -> int:
        """At start: reservations left by a stopped process charge nothing."""
        async def release(db):
            cur = await db.execute("UPDATE usage SET status = ?, images = 0, cost = 0, updated_at = ?"
                                   " WHERE status = 'reserved'", (status, time.time()))
            return cur.rowcount
        return await self._write(fn=release)

    async def reset_quota(self, guild_id: int, user_id: int, *, reset_by: int | None = None) -> None:
        """From now on, the member's daily and monthly quotas count only newer usage."""
        await self._write([(
            "INSERT INTO quota_resets (guild_id, user_id, reset_at, reset_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at,"
            " reset_by = excluded.reset_by", (guild_id, user_id, time.time(), reset_by))])

    # -- reports -----------------------------------------------------------------------------------

    async def usage_totals(self, guild_id: int, since: float, *, user_id: int | None = None,
                           conversation_id: int | None = None) -> UsageTotals:
        where, params = ["guild_id = ?", "created_at >= ?"], [guild_id, since]
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        failed = ",".join("?" * 4)
        sql = ("SELECT COALESCE(SUM(CASE WHEN status = 'charged' THEN images END), 0),"
               " COALESCE(SUM(CASE WHEN status = 'charged' THEN cost END), 0),"
               " COUNT(CASE WHEN status = 'charged' THEN 1 END),"
               f" COUNT(CASE WHEN status IN ({failed}) THEN 1 END)"
               f" FROM usage WHERE {' AND '.join(where)}")
        async with self._db.execute(sql, ("failed", "refused", "cancelled", "interrupted", *params)) as cur:
            images, cost, jobs, not_charged = await cur.fetchone()
        return UsageTotals(int(images), float(cost), int(jobs), int(not_charged))

    async def top_users(self, guild_id: int, since: float, limit: int = 10) -> list[tuple[int, int, float]]:
        """(user id, images, cost) of the members who spent most, charged usage only."""
        async with self._db.execute(
                "SELECT user_id, SUM(images), SUM(cost) FROM usage WHERE guild_id = ? AND created_at >= ?"
                " AND status = 'charged' GROUP BY user_id ORDER BY SUM(cost) DESC, SUM(images) DESC LIMIT ?",
                (guild_id, since, limit)) as cur:
            return [(int(u), int(i), float(c)) for u, i, c in await cur.fetchall()]

    async def usage_by_model(self, guild_id: int, since: float) -> list[tuple[str, str, int, float]]:
        """(model, resolution, images, cost), most expensive first, charged usage only."""
        async with self._db.execute(
                "SELECT model, COALESCE(resolution, ''), SUM(images), SUM(cost) FROM usage"
                " WHERE guild_id = ? AND created_at >= ? AND status = 'charged'"
                " GROUP BY model, resolution ORDER BY SUM(cost) DESC LIMIT 10", (guild_id, since)) as cur:
            return [(m or "?", r, int(i), float(c)) for m, r, i, c in await cur.fetchall()]

    # -- limit overrides ---------------------------------------------------------------------------

    async def limit_overrides(self, guild_id: int) -> dict[str, dict[str, float | None]]:
        """scope ('guild' or 'role:<id>') -> limit name -> value (None: unlimited)."""
        async with self._db.execute("SELECT scope, name, value FROM limit_overrides WHERE guild_id = ?",
                                    (guild_id,)) as cur:
            rows = await cur.fetchall()
        out: dict[str, dict[str, float | None]] = {}
        for scope, name, value in rows:
            out.setdefault(scope, {})[name] = value
        return out

    async def set_limit_override(self, guild_id: int, scope: str, name: str, value: float | None, *,
                                 updated_by: int | None = None) -> None:
        await self._write([(
            "INSERT INTO limit_overrides (guild_id, scope, name, value, updated_by, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(guild_id, scope, name) DO UPDATE SET"
            " value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (guild_id, scope, name, value, updated_by, time.time()))])

    async def clear_limit_override(self, guild_id: int, scope: str, name: str) -> None:
        await self._write([("DELETE FROM limit_overrides WHERE guild_id = ? AND scope = ? AND name = ?",
                            (guild_id, scope, name))])

    # -- members' defaults -------------------------------------------------------------------------

    async def member_settings(self, user_id: int) -> dict[str, Any]:
        async with self._db.execute("SELECT settings FROM member_settings WHERE user_id = ?", (user_id,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else {}

    async def update_member_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        await self._write([(
            "INSERT INTO member_settings (user_id, settings, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(user_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            (user_id, json.dumps(settings), time.time()))])
