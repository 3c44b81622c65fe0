"""The durable job queue of deployments on PostgreSQL: procrastinate, on the bot's own database.

A gateway process defers a job (its id) inside the transaction that stores the job and makes the
member's reservation its own (`enqueue`, called by `store.create_job`): all of it commits together
or none of it does. Worker processes run procrastinate's worker, which hands each job to `run` (the
job runner's `run_stored`). procrastinate's `lock`, keyed by conversation, runs one conversation's
turns one at a time, in the order they were deferred, across every worker; different conversations
run side by side. Workers heartbeat; a job whose worker stopped beating (SIGKILL, a lost machine)
goes back to the queue at the next `retry_stalled` of any live process, and another worker runs it.
A worker stopping on SIGTERM lets its jobs finish for SHUTDOWN_GRACE_SECONDS (at most two heartbeats),
then hands the rest back (`HandBack`, retried at once by procrastinate's retry strategy).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.job_context import AbortReason

from .jobspec import MAX_STARTS

log = logging.getLogger(__name__)

TASK = "generate"

# procrastinate wakes its workers (LISTEN/NOTIFY) only when a job is inserted. A job that was waiting
# for its conversation's lock, or one handed back to the queue (a stalled or stopping worker's), would
# wait for the next poll: this trigger sends procrastinate's own wake-up whenever a job leaves 'doing'
# and that frees one. The poll is left as the safety net for a wake-up lost while a listener reconnects.
WAKE_TRIGGER = "bot_wake_workers_v1"
WAKE_WORKERS_SQL = f"""
CREATE OR REPLACE FUNCTION {WAKE_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload TEXT := json_build_object('type', 'job_inserted', 'job_id', OLD.id)::text;
BEGIN
    IF (TG_OP = 'UPDATE' AND NEW.status = 'todo') OR EXISTS (
            SELECT 1 FROM procrastinate_jobs WHERE lock = OLD.lock AND status = 'todo') THEN
        PERFORM pg_notify('procrastinate_queue_v1#' || OLD.queue_name, payload);
        PERFORM pg_notify('procrastinate_any_queue_v1', payload);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER {WAKE_TRIGGER}_update AFTER UPDATE OF status ON procrastinate_jobs FOR EACH ROW
    WHEN (OLD.status = 'doing' AND NEW.status <> 'doing' AND (NEW.status = 'todo' OR OLD.lock IS NOT NULL))
    EXECUTE FUNCTION {WAKE_TRIGGER}();
CREATE TRIGGER {WAKE_TRIGGER}_delete AFTER DELETE ON procrastinate_jobs FOR EACH ROW
    WHEN (OLD.status = 'doing' AND OLD.lock IS NOT NULL)
    EXECUTE FUNCTION {WAKE_TRIGGER}();
"""
SAFETY_POLL_SECONDS = 15.0  # only for a wake-up lost in transit; a stalled job's retry also wakes


class HandBack(Exception):
    """A stopping worker gives its unfinished job back to the queue."""


class _PlannedHandBack(logging.Filter):
    """procrastinate logs a job that raised with its traceback; a hand-back is planned, not a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HandBack):
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.getMessage()} (handed back: this worker is stopping)"
            record.args = ()
        return True


class DurableQueue:
    def __init__(self, pool: Any, run: Callable[[str, int], Awaitable[None]], *, concurrency: int,
                 heartbeat: float, lapse: float, grace: float) -> None:
        self.pool, self._run = pool, run
        self.concurrency, self.heartbeat, self.lapse = concurrency, heartbeat, lapse
        # procrastinate stops heartbeating before it waits for the running jobs: past the lapse, another
        # worker would take them while they still run. The grace ends a heartbeat before that.
        self.grace = max(0.0, min(grace, lapse - heartbeat))
        self.app = App(connector=PsycopgConnector())
        self.task = self.app.task(name=TASK, pass_context=True,
                                  retry=RetryStrategy(max_attempts=MAX_STARTS, retry_exceptions={HandBack}))(
            self._generate)
        self._worker: asyncio.Task | None = None
        logging.getLogger("procrastinate.worker").addFilter(_PlannedHandBack())

    async def open(self, exclusive: Callable[[str], Any]) -> None:
        """Share the store's connection pool, and create procrastinate's tables and the wake-up
        trigger once (procrastinate's schema script is not idempotent: the first process to start
        applies it, under a database lock)."""
        await self.app.open_async(pool=self.pool)
        async with exclusive("procrastinate-schema"):
            async with self.pool.connection() as connection:
                cursor = await connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS found")
                found = (await cursor.fetchone())["found"]
            if not found:
                await self.app.schema_manager.apply_schema_async()
                log.info("created the job queue's tables (procrastinate)")
            async with self.pool.connection() as connection:
                cursor = await connection.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s", (f"{WAKE_TRIGGER}_update",))
                if await cursor.fetchone() is None:
                    await connection.execute(WAKE_WORKERS_SQL)

    async def enqueue(self, connection: Any, job_id: str, conversation_id: int) -> int:
        """Defer a job on `connection`, inside its open transaction; returns the queue's job id."""
        return await self.task.configure(lock=f"conversation:{conversation_id}",
                                         connection=connection).defer_async(job_id=job_id)

    async def _generate(self, context: JobContext, job_id: str) -> None:
        try:
            await self._run(job_id, context.job.attempts)
        except asyncio.CancelledError:
            if context.abort_reason() == AbortReason.SHUTDOWN:
                raise HandBack() from None  # the strategy above puts it back in the queue
            raise

    def start_worker(self, name: str) -> None:
        self._worker = asyncio.create_task(self.app.run_worker_async(
            name=name, concurrency=self.concurrency, install_signal_handlers=False, delete_jobs="successful",
            shutdown_graceful_timeout=self.grace, update_heartbeat_interval=self.heartbeat,
            fetch_job_polling_interval=SAFETY_POLL_SECONDS,
            stalled_worker_timeout=self.lapse), name="procrastinate worker")

    async def stop_worker(self) -> None:
        """Stop taking jobs; the running ones get the grace period, then go back to the queue."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def retry_stalled(self) -> int:
        """Give the jobs of workers whose heartbeat lapsed back to the queue."""
        stalled = list(await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.lapse))
        for job in stalled:
            log.warning("job %s: its worker stopped answering; handing it to another worker",
                        job.task_kwargs.get("job_id"))
            await self.app.job_manager.retry_job(job)
        return len(stalled)

    async def cancel(self, queue_id: int) -> bool:
        """True when the job had not started (it never will); a running job is asked to stop, and
        its worker says so to the member."""
        manager = self.app.job_manager
        if await manager.cancel_job_by_id_async(queue_id):  # only a job still waiting is cancelled so
            return True
        await manager.cancel_job_by_id_async(queue_id, abort=True)
        return False

    async def depth(self) -> int:
        """Jobs waiting in the queue, across all processes."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'")
            return (await cursor.fetchone())["n"]

    async def close(self) -> None:
        await self.stop_worker()
        await self.app.close_async()
