"""Persistent state behind one interface: `Store` (store/protocol.py) with its record types.

`open_store(database_url, sqlite_path)` picks the backend: SQLite under DATA_DIR by default, PostgreSQL
when DATABASE_URL is a postgresql:// URL. Either way the schema is migrated before it is returned.
"""
from __future__ import annotations

from pathlib import Path

from .protocol import Store
from .records import (ACTIVE_JOB_STATUSES, Conversation, CoolingDown, JobRecord, MemberBusy, QuotaCheck, QuotaExceeded, QuotaUse,
                      StoredTurn, UsageEntry, UsageTotals)
from .sql import SqlStore

__all__ = ["ACTIVE_JOB_STATUSES", "Conversation", "CoolingDown", "JobRecord", "MemberBusy", "QuotaCheck", "QuotaExceeded", "QuotaUse",
           "Store", "StoredTurn", "UsageEntry", "UsageTotals", "open_store"]


async def open_store(sqlite_path: Path | str, database_url: str | None = None) -> Store:
    if database_url and database_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresDriver  # psycopg is only needed by deployments that use it

        driver = await PostgresDriver.open(database_url)
    else:
        from .sqlite import SqliteDriver

        driver = await SqliteDriver.open(sqlite_path)
    store = SqlStore(driver)
    try:
        await store.migrate()
    except BaseException:
        await driver.close()
        raise
    return store
