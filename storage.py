"""Persistent state: conversations, their turns (with original image bytes) and jobs.

SQLite through aiosqlite in WAL mode. Cogs talk only to `Storage`'s methods, never to SQL, so a
PostgreSQL implementation with the same methods can replace it for sharded deployments.

Turns form a tree: every turn points at its parent, and a conversation's `head_turn_id` is the
turn the next message builds on. History is the chain from a turn back to the root, which makes
branching ("Continue from here") and rerolls (a sibling of the original turn) plain inserts.
Each write that must be all-or-nothing (a turn with its images and its job's status) runs in one
transaction.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from providers.models import ImageData
from storage_usage import USAGE_SCHEMA, UsageStorage

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER UNIQUE,          -- the thread or DM channel whose messages continue it
    guild_id INTEGER,
    owner_id INTEGER NOT NULL,
    head_turn_id INTEGER,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES turns(id) ON DELETE SET NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'model')),
    text TEXT NOT NULL DEFAULT '',
    provider_state TEXT,
    provider TEXT,
    model TEXT,
    message_id INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_message ON turns(message_id);
CREATE TABLE IF NOT EXISTS images (
    turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    data BLOB NOT NULL,
    PRIMARY KEY (turn_id, position)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,               -- queued, running, done, failed, cancelled, interrupted
    user_id INTEGER NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER,
    message_id INTEGER,                 -- the status message that becomes the result
    conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
    user_turn_id INTEGER REFERENCES turns(id) ON DELETE SET NULL,
    model_turn_id INTEGER REFERENCES turns(id) ON DELETE SET NULL,
    options TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
"""

ACTIVE_JOB_STATUSES = ("queued", "running")


@dataclass(frozen=True)
class StoredTurn:
    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    text: str
    images: tuple[ImageData, ...]
    provider_state: dict[str, Any] | None
    provider: str | None
    model: str | None
    message_id: int | None


@dataclass(frozen=True)
class Conversation:
    id: int
    channel_id: int | None
    guild_id: int | None
    owner_id: int
    head_turn_id: int | None
    settings: dict[str, Any]


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    status: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    conversation_id: int | None
    user_turn_id: int | None
    model_turn_id: int | None
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Storage(UsageStorage):
    """Conversations, turns and jobs here; usage, limits and members' settings in UsageStorage."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write_lock = asyncio.Lock()  # one writer at a time; SQLite serialises them anyway

    @classmethod
    async def open(cls, path: Path | str) -> Storage:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.executescript(SCHEMA + USAGE_SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, statements: Iterable[tuple[str, tuple]] | None = None, fn=None):
        """Run writes in one transaction: everything lands, or nothing does."""
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                result = None
                if statements:
                    for sql, params in statements:
                        await self._db.execute(sql, params)
                if fn is not None:
                    result = await fn(self._db)
                await self._db.execute("COMMIT")
                return result
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    # -- conversations -------------------------------------------------------------------------

    async def create_conversation(self, *, owner_id: int, guild_id: int | None,
                                  channel_id: int | None = None) -> Conversation:
        """A new conversation; for a channel that already has one (a race), that one is returned."""
        now = time.time()

        async def insert(db):
            cur = await db.execute(
                "INSERT INTO conversations (channel_id, guild_id, owner_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(channel_id) DO NOTHING",
                (channel_id, guild_id, owner_id, now, now))
            return cur.lastrowid if cur.rowcount else None

        conv_id = await self._write(fn=insert)
        if conv_id is None:
            return await self.conversation_for_channel(channel_id)
        return Conversation(conv_id, channel_id, guild_id, owner_id, None, {})

    async def conversation(self, conversation_id: int) -> Conversation | None:
        return await self._one_conversation("id = ?", conversation_id)

    async def conversation_for_channel(self, channel_id: int) -> Conversation | None:
        return await self._one_conversation("channel_id = ?", channel_id)

    async def _one_conversation(self, where: str, value) -> Conversation | None:
        async with self._db.execute(f"SELECT * FROM conversations WHERE {where}", (value,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Conversation(row["id"], row["channel_id"], row["guild_id"], row["owner_id"],
                            row["head_turn_id"], json.loads(row["settings"]))

    async def attach_channel(self, conversation_id: int, channel_id: int | None) -> None:
        await self._write([("UPDATE conversations SET channel_id = ?, updated_at = ? WHERE id = ?",
                            (channel_id, time.time(), conversation_id))])

    async def set_head(self, conversation_id: int, turn_id: int) -> None:
        await self._write([("UPDATE conversations SET head_turn_id = ?, updated_at = ? WHERE id = ?",
                            (turn_id, time.time(), conversation_id))])

    async def update_settings(self, conversation_id: int, settings: dict[str, Any]) -> None:
        await self._write([("UPDATE conversations SET settings = ?, updated_at = ? WHERE id = ?",
                            (json.dumps(settings), time.time(), conversation_id))])

    # -- turns ---------------------------------------------------------------------------------

    @staticmethod
    async def _insert_turn(db, *, conversation_id: int, parent_id: int | None, role: str, text: str,
                           images: Iterable[ImageData], provider_state=None, provider=None, model=None,
                           message_id=None) -> int:
        cur = await db.execute(
            "INSERT INTO turns (conversation_id, parent_id, role, text, provider_state, provider, model,"
            " message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, parent_id, role, text,
             json.dumps(provider_state) if provider_state is not None else None,
             provider, model, message_id, time.time()))
        turn_id = cur.lastrowid
        await db.executemany(
            "INSERT INTO images (turn_id, position, mime_type, width, height, data) VALUES (?, ?, ?, ?, ?, ?)",
            [(turn_id, i, img.mime_type, img.width, img.height, img.data) for i, img in enumerate(images)])
        return turn_id

    async def add_turn(self, *, conversation_id: int, parent_id: int | None, role: str, text: str = "",
                       images: Iterable[ImageData] = (), provider_state=None, provider=None, model=None,
                       message_id: int | None = None, make_head: bool = False) -> int:
        images = list(images)

        async def insert(db):
            turn_id = await self._insert_turn(
                db, conversation_id=conversation_id, parent_id=parent_id, role=role, text=text,
                images=images, provider_state=provider_state, provider=provider, model=model,
                message_id=message_id)
            if make_head:
                await db.execute("UPDATE conversations SET head_turn_id = ?, updated_at = ? WHERE id = ?",
                                 (turn_id, time.time(), conversation_id))
            return turn_id

        return await self._write(fn=insert)

    async def finish_job_with_turn(self, job_id: str, *, conversation_id: int, parent_id: int,
                                   text: str, images: Iterable[ImageData], provider_state, provider: str,
                                   model: str, make_head: bool) -> int:
        """Store the model's answer and mark its job done, in one transaction."""
        images = list(images)

        async def insert(db):
            turn_id = await self._insert_turn(
                db, conversation_id=conversation_id, parent_id=parent_id, role="model", text=text,
                images=images, provider_state=provider_state, provider=provider, model=model)
            now = time.time()
            if make_head:
                await db.execute("UPDATE conversations SET head_turn_id = ?, updated_at = ? WHERE id = ?",
                                 (turn_id, now, conversation_id))
            await db.execute("UPDATE jobs SET status = 'done', model_turn_id = ?, updated_at = ? WHERE id = ?",
                             (turn_id, now, job_id))
            return turn_id

        return await self._write(fn=insert)

    async def clear_conversation(self, conversation_id: int) -> int:
        """Forget a conversation's turns and images (its settings stay); returns how many turns went."""

        async def clear(db):
            await db.execute("UPDATE conversations SET head_turn_id = NULL, updated_at = ? WHERE id = ?",
                             (time.time(), conversation_id))
            cur = await db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            return cur.rowcount

        return await self._write(fn=clear)

    async def set_turn_parent(self, turn_id: int, parent_id: int | None) -> None:
        await self._write([("UPDATE turns SET parent_id = ? WHERE id = ?", (parent_id, turn_id))])

    async def set_turn_message(self, turn_id: int, message_id: int) -> None:
        await self._write([("UPDATE turns SET message_id = ? WHERE id = ?", (message_id, turn_id))])

    async def turn(self, turn_id: int) -> StoredTurn | None:
        turns = await self._turns_by_ids([turn_id])
        return turns[0] if turns else None

    async def turn_for_message(self, message_id: int) -> StoredTurn | None:
        async with self._db.execute("SELECT id FROM turns WHERE message_id = ? ORDER BY id DESC LIMIT 1",
                                    (message_id,)) as cur:
            row = await cur.fetchone()
        return await self.turn(row["id"]) if row else None

    async def history(self, turn_id: int | None, limit: int) -> list[StoredTurn]:
        """The chain of turns ending at `turn_id`, oldest first, at most `limit` turns."""
        if turn_id is None or limit <= 0:
            return []
        async with self._db.execute(
            "WITH RECURSIVE chain(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM turns WHERE id = ?"
            " UNION ALL SELECT t.id, t.parent_id, chain.depth + 1 FROM turns t"
            " JOIN chain ON t.id = chain.parent_id WHERE chain.depth + 1 < ?)"
            " SELECT id FROM chain ORDER BY depth DESC", (turn_id, limit)) as cur:
            ids = [row["id"] for row in await cur.fetchall()]
        return await self._turns_by_ids(ids)

    async def _turns_by_ids(self, ids: list[int]) -> list[StoredTurn]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        async with self._db.execute(f"SELECT * FROM turns WHERE id IN ({marks})", ids) as cur:
            rows = {row["id"]: row for row in await cur.fetchall()}
        async with self._db.execute(
                f"SELECT * FROM images WHERE turn_id IN ({marks}) ORDER BY turn_id, position", ids) as cur:
            images: dict[int, list[ImageData]] = {}
            for img in await cur.fetchall():
                images.setdefault(img["turn_id"], []).append(
                    ImageData(bytes(img["data"]), img["mime_type"], img["width"], img["height"]))
        return [
            StoredTurn(r["id"], r["conversation_id"], r["parent_id"], r["role"], r["text"],
                       tuple(images.get(r["id"], ())),
                       json.loads(r["provider_state"]) if r["provider_state"] else None,
                       r["provider"], r["model"], r["message_id"])
            for r in (rows[i] for i in ids if i in rows)
        ]

    # -- jobs ----------------------------------------------------------------------------------

    async def create_job(self, job: JobRecord) -> None:
        now = time.time()
        await self._write([(
            "INSERT INTO jobs (id, kind, status, user_id, guild_id, channel_id, message_id, conversation_id,"
            " user_turn_id, model_turn_id, options, error, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.kind, job.status, job.user_id, job.guild_id, job.channel_id, job.message_id,
             job.conversation_id, job.user_turn_id, job.model_turn_id, json.dumps(job.options), job.error,
             now, now))])

    async def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"status", "message_id", "channel_id", "conversation_id", "user_turn_id", "model_turn_id",
                   "error"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        await self._write([(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?",
                            (*fields.values(), time.time(), job_id))])

    async def job(self, job_id: str) -> JobRecord | None:
        async with self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def job_for_model_turn(self, turn_id: int) -> JobRecord | None:
        async with self._db.execute("SELECT * FROM jobs WHERE model_turn_id = ?", (turn_id,)) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def jobs_with_status(self, *statuses: str) -> list[JobRecord]:
        marks = ",".join("?" * len(statuses))
        async with self._db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at",
                                    statuses) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()]

    async def mark_active_jobs(self, status: str, error: str) -> list[JobRecord]:
        """Mark every queued or running job (left over from a stopped process) and return them."""
        jobs = await self.jobs_with_status(*ACTIVE_JOB_STATUSES)
        if jobs:
            marks = ",".join("?" * len(jobs))
            await self._write([(f"UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id IN ({marks})",
                                (status, error, time.time(), *[j.id for j in jobs]))])
        return jobs

    async def prune(self, older_than_days: float) -> int:
        """Delete conversations idle for longer than the retention period (their turns and images too)."""
        cutoff = time.time() - older_than_days * 86400

        async def delete(db):
            await db.execute("DELETE FROM jobs WHERE updated_at < ? AND status NOT IN ('queued', 'running')",
                             (cutoff,))
            cur = await db.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,))
            return cur.rowcount

        return await self._write(fn=delete)


def _job_from_row(row) -> JobRecord:
    return JobRecord(row["id"], row["kind"], row["status"], row["user_id"], row["guild_id"], row["channel_id"],
                     row["message_id"], row["conversation_id"], row["user_turn_id"], row["model_turn_id"],
                     json.loads(row["options"]), row["error"])
