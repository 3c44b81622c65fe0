"""The SQLite backend (aiosqlite, WAL): the embedded default, one process, nothing else to run.

One connection; write transactions take turns on it (SQLite has one writer at a time anyway) and
start with BEGIN IMMEDIATE, which holds the database's write lock from the first statement, so a
transaction that reads a quota and then reserves it cannot race another process's.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .driver import Row


class SqliteTransaction:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._db.execute(sql, params) as cur:
            return cur.rowcount

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())


class SqliteDriver(SqliteTransaction):
    name = "sqlite"
    serial_primary_key = "INTEGER PRIMARY KEY"  # the rowid: numbered by SQLite
    blob = "BLOB"

    def __init__(self, db: aiosqlite.Connection) -> None:
        super().__init__(db)
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> SqliteDriver:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)  # transactions are ours
        db.row_factory = aiosqlite.Row
        try:
            await _switch_to_wal(db)
            for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
                await db.execute(f"PRAGMA {pragma}")
        except BaseException:
            await db.close()
            raise
        return cls(db)

    @asynccontextmanager
    async def transaction(self, lock: str | Sequence[str] | None = None) -> AsyncIterator[SqliteTransaction]:
        del lock  # BEGIN IMMEDIATE already excludes every other writer
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(self._db)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def close(self) -> None:
        await self._db.close()


async def _switch_to_wal(db: aiosqlite.Connection, attempts: int = 100) -> None:
    """PRAGMA journal_mode=WAL on a new file needs a moment alone with it, and SQLite does not wait
    for that (no busy handler): when another connection opens the file at the same time, retry."""
    for attempt in range(attempts):
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02)
