"""`SqlStore`: every query of the bot, written once, over a `store.driver.Driver`.

Turns form a tree: every turn points at its parent, and a conversation's `head_turn_id` is the
turn the next message builds on. History is the chain from a turn back to the root, which makes
branching ("Continue from here") and rerolls (a sibling of the original turn) plain inserts.

Every generation is one `usage` row. Admission inserts it as `reserved` (the requested images and
the estimated cost) in a transaction that holds the server's quota lock and first sums what the
quota windows already hold, so two admissions, in any processes, can never both take the last
unit. The row then becomes `charged` (the real images and cost), or one of NOT_CHARGED. Quotas
count `reserved` and `charged` rows since the period start or the member's last quota reset.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from providers.models import ImageData

from . import schema
from .driver import Driver, Row, Transaction
from .processes import ProcessTable
from .records import (ACTIVE_JOB_STATUSES, COUNTED, NOT_CHARGED, Conversation, CoolingDown, JobRecord, MemberBusy,
                      QuotaCheck, QuotaExceeded, QuotaUse, StoredTurn, UsageEntry, UsageTotals, job_from_row)

JOB_FIELDS = ("status", "message_id", "channel_id", "conversation_id", "user_turn_id", "model_turn_id", "error",
              "owner")


def marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class SqlStore(ProcessTable):
    """The Store protocol over a driver; processes, recovery and ownership: store/processes.py."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def migrate(self) -> None:
        """Create or update the schema; safe when several processes start at once."""
        db = self.driver
        async with db.transaction(lock="schema") as tx:
            await tx.execute(schema.MIGRATIONS_TABLE)
            done = {row["version"] for row in await tx.fetch_all("SELECT version FROM schema_migrations")}
            for version in sorted(set(schema.MIGRATIONS) - done):
                for statement in schema.statements(version, serial=db.serial_primary_key, blob=db.blob):
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                                 (version, time.time()))

    async def close(self) -> None:
        await self.driver.close()

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A critical section no other holder of `name`, in any process, runs at the same time
        (on SQLite it also holds every write: keep it short there)."""
        async with self.driver.transaction(lock=name):
            yield

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.driver.transaction() as tx:
            return await tx.execute(sql, params)

    # -- conversations -------------------------------------------------------------------------

    async def create_conversation(self, *, owner_id: int, guild_id: int | None,
                                  channel_id: int | None = None) -> Conversation:
        """A new conversation; for a channel that already has one (a race), that one is returned."""
        now = time.time()
        async with self.driver.transaction() as tx:
            row = await tx.fetch_one(
                "INSERT INTO conversations (channel_id, guild_id, owner_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id) DO NOTHING RETURNING id",
                (channel_id, guild_id, owner_id, now, now))
        if row is None:
            return await self.conversation_for_channel(channel_id)
        return Conversation(row["id"], channel_id, guild_id, owner_id, None, {})

    async def conversation(self, conversation_id: int) -> Conversation | None:
        return _conversation(await self.driver.fetch_one("SELECT * FROM conversations WHERE id = ?",
                                                         (conversation_id,)))

    async def conversation_for_channel(self, channel_id: int) -> Conversation | None:
        return _conversation(await self.driver.fetch_one("SELECT * FROM conversations WHERE channel_id = ?",
                                                         (channel_id,)))

    async def attach_channel(self, conversation_id: int, channel_id: int | None) -> None:
        await self._run("UPDATE conversations SET channel_id = ?, updated_at = ? WHERE id = ?",
                        (channel_id, time.time(), conversation_id))

    async def set_head(self, conversation_id: int, turn_id: int) -> None:
        await self._run("UPDATE conversations SET head_turn_id = ?, updated_at = ? WHERE id = ?",
                        (turn_id, time.time(), conversation_id))

    async def update_options(self, conversation_id: int, options: dict[str, Any]) -> None:
        await self._run("UPDATE conversations SET settings = ?, updated_at = ? WHERE id = ?",
                        (json.dumps(options), time.time(), conversation_id))

    async def clear_conversation(self, conversation_id: int) -> int:
        """Forget a conversation's turns and images (its options stay); returns how many turns went."""
        async with self.driver.transaction() as tx:
            await tx.execute("UPDATE conversations SET head_turn_id = NULL, updated_at = ? WHERE id = ?",
                             (time.time(), conversation_id))
            return await tx.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))

    async def prune(self, older_than_days: float) -> int:
        """Delete conversations idle for longer than the retention period (their turns and images too)."""
        cutoff = time.time() - older_than_days * 86400
        async with self.driver.transaction() as tx:
            await tx.execute(f"DELETE FROM jobs WHERE updated_at < ? AND status NOT IN ({marks(ACTIVE_JOB_STATUSES)})",
                             (cutoff, *ACTIVE_JOB_STATUSES))
            return await tx.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,))

    # -- turns ---------------------------------------------------------------------------------

    async def add_turn(self, *, conversation_id: int, parent_id: int | None, role: str, text: str = "",
                       images: Iterable[ImageData] = (), provider_state=None, provider=None, model=None,
                       message_id: int | None = None, make_head: bool = False) -> int:
        async with self.driver.transaction() as tx:
            return await _insert_turn(tx, conversation_id, parent_id, role, text, images, provider_state,
                                      provider, model, message_id, make_head)

    async def finish_job_with_turn(self, job_id: str, *, conversation_id: int, parent_id: int, text: str,
                                   images: Iterable[ImageData], provider_state, provider: str, model: str,
                                   make_head: bool) -> int:
        """Store the model's answer and mark its job done, in one transaction."""
        async with self.driver.transaction() as tx:
            turn_id = await _insert_turn(tx, conversation_id, parent_id, "model", text, images, provider_state,
                                         provider, model, None, make_head)
            await tx.execute("UPDATE jobs SET status = 'done', model_turn_id = ?, updated_at = ? WHERE id = ?",
                             (turn_id, time.time(), job_id))
            return turn_id

    async def delete_turns(self, conversation_id: int, turn_ids: Sequence[int]) -> None:
        """Remove turns (a deleted result and its prompt), newest first, in one transaction. Each
        turn's children and the conversation's head move back to its parent, so the rest of the
        conversation stays one chain."""
        async with self.driver.transaction() as tx:
            for turn_id in turn_ids:
                row = await tx.fetch_one("SELECT parent_id FROM turns WHERE id = ? AND conversation_id = ?",
                                         (turn_id, conversation_id))
                if row is None:
                    continue
                parent = row["parent_id"]
                await tx.execute("UPDATE turns SET parent_id = ? WHERE parent_id = ?", (parent, turn_id))
                await tx.execute("UPDATE conversations SET head_turn_id = ?, updated_at = ?"
                                 " WHERE id = ? AND head_turn_id = ?", (parent, time.time(), conversation_id, turn_id))
                await tx.execute("DELETE FROM turns WHERE id = ?", (turn_id,))

    async def set_turn_parent(self, turn_id: int, parent_id: int | None) -> None:
        await self._run("UPDATE turns SET parent_id = ? WHERE id = ?", (parent_id, turn_id))

    async def set_turn_message(self, turn_id: int, message_id: int) -> None:
        await self._run("UPDATE turns SET message_id = ? WHERE id = ?", (message_id, turn_id))

    async def turn(self, turn_id: int) -> StoredTurn | None:
        turns = await self._turns_by_ids([turn_id])
        return turns[0] if turns else None

    async def history(self, turn_id: int | None, limit: int) -> list[StoredTurn]:
        """The chain of turns ending at `turn_id`, oldest first, at most `limit` turns."""
        if turn_id is None or limit <= 0:
            return []
        rows = await self.driver.fetch_all(
            "WITH RECURSIVE chain(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM turns WHERE id = ?"
            " UNION ALL SELECT t.id, t.parent_id, chain.depth + 1 FROM turns t"
            " JOIN chain ON t.id = chain.parent_id WHERE chain.depth + 1 < ?)"
            " SELECT id FROM chain ORDER BY depth DESC", (turn_id, limit))
        return await self._turns_by_ids([row["id"] for row in rows])

    async def _turns_by_ids(self, ids: list[int]) -> list[StoredTurn]:
        if not ids:
            return []
        db = self.driver
        rows = {r["id"]: r for r in await db.fetch_all(f"SELECT * FROM turns WHERE id IN ({marks(ids)})", ids)}
        images: dict[int, list[ImageData]] = {}
        for img in await db.fetch_all(
                f"SELECT * FROM images WHERE turn_id IN ({marks(ids)}) ORDER BY turn_id, position", ids):
            images.setdefault(img["turn_id"], []).append(
                ImageData(bytes(img["data"]), img["mime_type"], img["width"], img["height"]))
        return [StoredTurn(r["id"], r["conversation_id"], r["parent_id"], r["role"], r["text"],
                           tuple(images.get(r["id"], ())),
                           json.loads(r["provider_state"]) if r["provider_state"] else None,
                           r["provider"], r["model"], r["message_id"])
                for r in (rows[i] for i in ids if i in rows)]

    # -- jobs ----------------------------------------------------------------------------------

    async def create_job(self, job: JobRecord, *, usage_id: int | None = None,
                         enqueue: Callable[[Transaction], Awaitable[int]] | None = None) -> None:
        """Store a job; with `usage_id`, the reservation becomes the job's. `enqueue` puts it in a durable
        queue inside the same transaction (returning the queue's job id): the job, its reservation and
        its place in the queue commit together, or none of them does."""
        now = time.time()
        async with self.driver.transaction() as tx:
            await tx.execute(
                "INSERT INTO jobs (id, kind, status, user_id, guild_id, channel_id, message_id, conversation_id,"
                " user_turn_id, model_turn_id, options, error, delivery, owner, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.kind, job.status, job.user_id, job.guild_id, job.channel_id, job.message_id,
                 job.conversation_id, job.user_turn_id, job.model_turn_id, json.dumps(job.options), job.error,
                 json.dumps(job.delivery) if job.delivery is not None else None, self.process_id, now, now))
            if usage_id is not None:
                await tx.execute("UPDATE usage SET job_id = ? WHERE id = ?", (job.id, usage_id))
            if enqueue is not None:
                queue_id = await enqueue(tx)
                await tx.execute("UPDATE jobs SET queue_id = ? WHERE id = ?", (queue_id, job.id))

    async def job_usage(self, job_id: str) -> int | None:
        """The usage row a job holds (reserved, or already charged or released)."""
        row = await self.driver.fetch_one("SELECT id FROM usage WHERE job_id = ? ORDER BY id", (job_id,))
        return row["id"] if row else None

    async def update_job(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(JOB_FIELDS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        await self._run(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?", (*fields.values(), time.time(), job_id))

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.driver.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(row) if row else None

    async def jobs_with_status(self, *statuses: str) -> list[JobRecord]:
        rows = await self.driver.fetch_all(
            f"SELECT * FROM jobs WHERE status IN ({marks(statuses)}) ORDER BY created_at", statuses)
        return [job_from_row(row) for row in rows]

    # -- usage and quotas ----------------------------------------------------------------------

    async def reserve_usage(self, entry: UsageEntry, checks: Sequence[QuotaCheck] = (), *,
                            max_active: int | None = None, cooldown: float = 0.0) -> int:
        """Insert a reservation if the member has fewer than `max_active` reserved (jobs at once),
        reserved nothing in the last `cooldown` seconds, and every check still has room for it, all
        in one transaction under the member's lock (and the server's, only when a check counts the whole
        server), whichever process asks; raises MemberBusy, CoolingDown or QuotaExceeded."""
        locks = [f"member:{entry.user_id}"]
        if any(check.user_id is None for check in checks):
            locks.append(f"quota:{entry.guild_id}")
        async with self.driver.transaction(lock=locks) as tx:
            if max_active is not None:
                row = await tx.fetch_one("SELECT COUNT(*) AS n FROM usage WHERE user_id = ? AND status = 'reserved'",
                                         (entry.user_id,))
                if row["n"] >= max_active:
                    raise MemberBusy(int(row["n"]), max_active)
            if cooldown > 0:
                row = await tx.fetch_one("SELECT MAX(created_at) AS last FROM usage WHERE user_id = ?",
                                         (entry.user_id,))
                wait = (row["last"] or 0) + cooldown - time.time()
                if wait > 0:
                    raise CoolingDown(wait)
            for check in checks:
                used = await _quota_use(tx, check.guild_id, check.user_id, check.since)
                if (check.max_images is not None and used.images + entry.images > check.max_images) or \
                        (check.max_cost is not None and used.cost + entry.cost > check.max_cost + 1e-9):
                    raise QuotaExceeded(check, used)
            now = time.time()
            row = await tx.fetch_one(
                "INSERT INTO usage (guild_id, user_id, conversation_id, kind, status, provider, model, resolution,"
                " requested_images, estimated_cost, images, cost, owner, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (entry.guild_id, entry.user_id, entry.conversation_id, entry.kind, entry.provider, entry.model,
                 entry.resolution, entry.images, entry.cost, entry.images, entry.cost, self.process_id, now, now))
            return row["id"]

    async def quota_use(self, guild_id: int, user_id: int | None, since: float) -> QuotaUse:
        """What counts against a quota window now (after the member's last quota reset)."""
        return await _quota_use(self.driver, guild_id, user_id, since)

    async def charge_usage(self, usage_id: int, *, job_id: str | None, provider: str, model: str,
                           resolution: str | None, images: int, cost: float, input_tokens: int | None = None,
                           output_tokens: int | None = None, conversation_id: int | None = None) -> None:
        await self._run(
            "UPDATE usage SET status = 'charged', job_id = COALESCE(?, job_id), provider = ?, model = ?,"
            " resolution = ?, images = ?, cost = ?, input_tokens = ?, output_tokens = ?,"
            " conversation_id = COALESCE(?, conversation_id), updated_at = ? WHERE id = ?",
            (job_id, provider, model, resolution, images, cost, input_tokens, output_tokens, conversation_id,
             time.time(), usage_id))

    async def release_usage(self, usage_id: int, status: str, *, job_id: str | None = None) -> None:
        """The generation failed or never ran: keep the record, charge nothing."""
        if status not in NOT_CHARGED:
            raise ValueError(f"not a release status: {status}")
        await self._run("UPDATE usage SET status = ?, job_id = COALESCE(?, job_id), images = 0, cost = 0,"
                        " updated_at = ? WHERE id = ? AND status = 'reserved'", (status, job_id, time.time(), usage_id))

    async def reset_quota(self, guild_id: int, user_id: int, *, reset_by: int | None = None) -> None:
        """From now on, the member's daily and monthly quotas count only newer usage."""
        await self._run("INSERT INTO quota_resets (guild_id, user_id, reset_at, reset_by) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at,"
                        " reset_by = excluded.reset_by", (guild_id, user_id, time.time(), reset_by))

    async def usage_totals(self, guild_id: int, since: float, *, user_id: int | None = None,
                           conversation_id: int | None = None) -> UsageTotals:
        where, params = ["guild_id = ?", "created_at >= ?"], [guild_id, since]
        for column, value in (("user_id", user_id), ("conversation_id", conversation_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        failed = NOT_CHARGED[:4]
        row = await self.driver.fetch_one(
            "SELECT COALESCE(SUM(CASE WHEN status = 'charged' THEN images END), 0) AS images,"
            " COALESCE(SUM(CASE WHEN status = 'charged' THEN cost END), 0) AS cost,"
            " COUNT(CASE WHEN status = 'charged' THEN 1 END) AS jobs,"
            f" COUNT(CASE WHEN status IN ({marks(failed)}) THEN 1 END) AS not_charged"
            f" FROM usage WHERE {' AND '.join(where)}", (*failed, *params))
        return UsageTotals(int(row["images"]), float(row["cost"]), int(row["jobs"]), int(row["not_charged"]))

    async def top_users(self, guild_id: int, since: float, limit: int = 10) -> list[tuple[int, int, float]]:
        """(user id, images, cost) of the members who spent most, charged usage only."""
        rows = await self.driver.fetch_all(
            "SELECT user_id, SUM(images) AS images, SUM(cost) AS cost FROM usage WHERE guild_id = ?"
            " AND created_at >= ? AND status = 'charged' GROUP BY user_id"
            " ORDER BY SUM(cost) DESC, SUM(images) DESC LIMIT ?", (guild_id, since, limit))
        return [(int(r["user_id"]), int(r["images"]), float(r["cost"])) for r in rows]

    async def usage_by_model(self, guild_id: int, since: float) -> list[tuple[str, str, int, float]]:
        """(model, resolution, images, cost), most expensive first, charged usage only."""
        rows = await self.driver.fetch_all(
            "SELECT model, COALESCE(resolution, '') AS resolution, SUM(images) AS images, SUM(cost) AS cost"
            " FROM usage WHERE guild_id = ? AND created_at >= ? AND status = 'charged'"
            " GROUP BY model, resolution ORDER BY SUM(cost) DESC LIMIT 10", (guild_id, since))
        return [(r["model"] or "?", r["resolution"], int(r["images"]), float(r["cost"])) for r in rows]

    # -- limit overrides and members' defaults -------------------------------------------------

    async def limit_overrides(self, guild_id: int) -> dict[str, dict[str, float | None]]:
        """scope ('guild' or 'role:<id>') -> limit name -> value (None: unlimited)."""
        out: dict[str, dict[str, float | None]] = {}
        for row in await self.driver.fetch_all("SELECT scope, name, value FROM limit_overrides WHERE guild_id = ?",
                                               (guild_id,)):
            out.setdefault(row["scope"], {})[row["name"]] = row["value"]
        return out

    async def set_limit_override(self, guild_id: int, scope: str, name: str, value: float | None, *,
                                 updated_by: int | None = None) -> None:
        await self._run(
            "INSERT INTO limit_overrides (guild_id, scope, name, value, updated_by, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, scope, name) DO UPDATE SET"
            " value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (guild_id, scope, name, value, updated_by, time.time()))

    async def clear_limit_override(self, guild_id: int, scope: str, name: str) -> None:
        await self._run("DELETE FROM limit_overrides WHERE guild_id = ? AND scope = ? AND name = ?",
                        (guild_id, scope, name))

    async def member_defaults(self, user_id: int) -> dict[str, Any]:
        row = await self.driver.fetch_one("SELECT settings FROM member_settings WHERE user_id = ?", (user_id,))
        return json.loads(row["settings"]) if row else {}

    async def update_member_defaults(self, user_id: int, defaults: dict[str, Any]) -> None:
        await self._run(
            "INSERT INTO member_settings (user_id, settings, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            (user_id, json.dumps(defaults), time.time()))


async def _insert_turn(tx: Transaction, conversation_id, parent_id, role, text, images, provider_state, provider,
                       model, message_id, make_head: bool) -> int:
    now = time.time()
    row = await tx.fetch_one(
        "INSERT INTO turns (conversation_id, parent_id, role, text, provider_state, provider, model, message_id,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (conversation_id, parent_id, role, text, json.dumps(provider_state) if provider_state is not None else None,
         provider, model, message_id, now))
    turn_id = row["id"]
    rows = [(turn_id, i, img.mime_type, img.width, img.height, img.data) for i, img in enumerate(images)]
    if rows:
        await tx.execute_many("INSERT INTO images (turn_id, position, mime_type, width, height, data)"
                              " VALUES (?, ?, ?, ?, ?, ?)", rows)
    if make_head:
        await tx.execute("UPDATE conversations SET head_turn_id = ?, updated_at = ? WHERE id = ?",
                         (turn_id, now, conversation_id))
    return turn_id


async def _quota_use(db: Driver | Transaction, guild_id: int, user_id: int | None, since: float) -> QuotaUse:
    where, params = f"guild_id = ? AND status IN ({marks(COUNTED)}) AND created_at >= ?", [guild_id, *COUNTED, since]
    if user_id is not None:  # a member's window starts at their last quota reset, if later
        where += (" AND user_id = ? AND created_at >= COALESCE("
                  "(SELECT reset_at FROM quota_resets WHERE guild_id = ? AND user_id = ?), 0)")
        params += [user_id, guild_id, user_id]
    row = await db.fetch_one(f"SELECT COALESCE(SUM(images), 0) AS images, COALESCE(SUM(cost), 0) AS cost"
                             f" FROM usage WHERE {where}", params)
    return QuotaUse(int(row["images"]), float(row["cost"]))


def _conversation(row: Row | None) -> Conversation | None:
    if row is None:
        return None
    return Conversation(row["id"], row["channel_id"], row["guild_id"], row["owner_id"], row["head_turn_id"],
                        json.loads(row["settings"]))

