"""What a database backend provides to `store.sql.SqlStore`: connections, transactions, and the
few words of its SQL dialect. Every query of the store is written once, in SQL that SQLite and
PostgreSQL both run, with `?` placeholders; a backend is one module implementing `Driver`
(`store/sqlite.py`; `store/postgres.py` for deployments on several machines).

Rows are mappings from column name to value (`row["id"]`); BLOB/BYTEA columns come back as bytes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class Transaction(Protocol):
    """Statements inside one transaction: everything lands at commit, or nothing does."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Driver(Protocol):
    name: str  # "sqlite" or "postgresql"
    # Column types the schema needs that the two dialects spell differently.
    serial_primary_key: str  # an auto-numbered 64-bit id: INTEGER PRIMARY KEY / BIGINT GENERATED ...
    blob: str  # BLOB / BYTEA

    def transaction(self, lock: str | Sequence[str] | None = None) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction. `lock` names a critical section (e.g. "quota:<guild>"), or several, that no
        other transaction with the same name runs at the same time, in any process: SQLite holds
        the database's write lock from the start (BEGIN IMMEDIATE), PostgreSQL takes a
        transaction-scoped advisory lock on the name. A transaction that read a quota and then
        reserves it under such a lock cannot race another one."""

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """A read outside any transaction (autocommit)."""

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def close(self) -> None: ...
