"""Which bot processes share the database, and what a process that is gone left behind.

Every process registers at start (`register_process`) and heartbeats every HEARTBEAT_S; the jobs
and usage reservations it creates carry its id as `owner`. Recovery (`mark_active_jobs`,
`release_stale_reservations`) takes only what belongs to no live process: an owner whose heartbeat
lapsed (LAPSE_S), whose row is gone (it stopped cleanly), that ran on this host under a pid that no
longer runs (a restart need not wait for the lapse), or no owner at all (data from before owners).
A live process's jobs are never touched, whichever process recovers.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence

from .driver import Driver, Row, Transaction
from .records import ACTIVE_JOB_STATUSES, JobRecord, job_from_row

HEARTBEAT_S = 10.0
LAPSE_S = 3 * HEARTBEAT_S  # three missed heartbeats: the process is gone


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return True


def alive(row: Row, now: float, me: str | None, lapse: float = LAPSE_S) -> bool:
    """Whether the process of a `processes` row still runs, as far as this process can tell."""
    if row["id"] == me:
        return True
    if row["host"] == socket.gethostname():
        # This pid is ours now (a container restarted), or it runs no more: gone, lapse or not.
        if row["pid"] == os.getpid() or not _pid_runs(row["pid"]):
            return False
    return row["heartbeat_at"] >= now - lapse


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


class ProcessTable:
    """The processes part of `store.sql.SqlStore` (a mixin over its driver)."""

    driver: Driver
    process_id: str | None = None  # set by register_process; stamped on jobs and reservations
    lapse: float = LAPSE_S  # seconds without a heartbeat after which a process is taken for gone

    async def register_process(self, role: str, shard_ids: Sequence[int] = (), *, pid: int | None = None,
                               host: str | None = None) -> str:
        """Announce this process; returns its id. `pid` and `host` default to this process's."""
        pid = os.getpid() if pid is None else pid
        host = socket.gethostname() if host is None else host
        process_id = f"{host}:{pid}:{secrets.token_hex(4)}"
        self._registration = (process_id, role, pid, host, ",".join(map(str, shard_ids)), time.time())
        async with self.driver.transaction() as tx:
            await self._insert_process(tx)
        self.process_id = process_id
        return process_id

    async def _insert_process(self, tx: Transaction) -> None:
        now = time.time()
        await tx.execute("INSERT INTO processes (id, role, pid, host, shard_ids, started_at, heartbeat_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (*self._registration, now))

    async def heartbeat(self) -> bool:
        """Say this process is alive. False when its row was gone (another process took it for gone
        after a long silence and took over its jobs): it is written again, under the same id."""
        async with self.driver.transaction() as tx:
            if await tx.execute("UPDATE processes SET heartbeat_at = ? WHERE id = ?",
                                (time.time(), self.process_id)) > 0:
                return True
            await self._insert_process(tx)
            return False

    async def unregister_process(self) -> None:
        """A clean stop: what this process still holds is anyone's to recover at once."""
        if self.process_id is not None:
            async with self.driver.transaction() as tx:
                await tx.execute("DELETE FROM processes WHERE id = ?", (self.process_id,))

    async def processes(self) -> list[Row]:
        return await self.driver.fetch_all("SELECT * FROM processes ORDER BY started_at")

    async def mark_active_jobs(self, status: str, error: str) -> list[JobRecord]:
        """Mark the queued or running jobs of processes that are gone and return them; one process
        at a time, so each such job is returned once, to one caller."""
        async with self.driver.transaction(lock="recovery") as tx:
            orphaned, params = await self._orphaned(tx)
            rows = await tx.fetch_all(
                f"SELECT * FROM jobs WHERE status IN ({_marks(ACTIVE_JOB_STATUSES)}) AND {orphaned}"
                " ORDER BY created_at", (*ACTIVE_JOB_STATUSES, *params))
            jobs = [job_from_row(row) for row in rows]
            if jobs:
                await tx.execute(f"UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id IN ({_marks(jobs)})",
                                 (status, error, time.time(), *[j.id for j in jobs]))
            return jobs

    async def release_stale_reservations(self, status: str = "interrupted") -> int:
        """Reservations held by processes that are gone charge nothing, unless their job is still
        waiting or running (a durable queue hands it to another worker, which settles it)."""
        async with self.driver.transaction(lock="recovery") as tx:
            orphaned, params = await self._orphaned(tx)
            return await tx.execute(
                f"UPDATE usage SET status = ?, images = 0, cost = 0, updated_at = ?"
                f" WHERE status = 'reserved' AND {orphaned} AND (job_id IS NULL OR job_id NOT IN"
                f" (SELECT id FROM jobs WHERE status IN ({_marks(ACTIVE_JOB_STATUSES)})))",
                (status, time.time(), *params, *ACTIVE_JOB_STATUSES))

    async def _orphaned(self, tx: Transaction) -> tuple[str, list[str]]:
        """A WHERE clause for rows whose `owner` is no live process; forgets processes that are gone."""
        now = time.time()
        rows = await tx.fetch_all("SELECT * FROM processes")
        live = [row["id"] for row in rows if alive(row, now, self.process_id, self.lapse)]
        gone = [row["id"] for row in rows if row["id"] not in live]
        if gone:
            await tx.execute(f"DELETE FROM processes WHERE id IN ({_marks(gone)})", gone)
        if not live:
            return "1 = 1", []
        return f"(owner IS NULL OR owner NOT IN ({_marks(live)}))", live
