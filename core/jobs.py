"""The job runner: every generation, whatever started it, runs through here.

A job waits for its turn twice (core/queue.py): in its conversation's lane (turns of one thread run
one at a time, in arrival order) and for one of MAX_CONCURRENT_JOBS slots (showing its queue position).
Then it builds the request from the stored conversation, calls the providers, stores the answer
and the job's outcome in one transaction, and hands the result to its Delivery (core/delivery.py).

Starting a job has one shape everywhere:

    async with runner.place(lane_key) as ticket:       # a place in the lane, before any await
        ...check the input...                           # raising here gives the place back
        await runner.admit(ticket, member, guild_id, kind, options)   # limits and quota (LimitError)
        await runner.submit(ticket, spec, delivery)     # the job owns the reservation from here

Leaving the block without `submit` (an error, a refusal, a return) releases the place and the
reserved quota.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from providers.errors import NoImageError, ProviderError, RefusedError
from providers.models import GenerationRequest, GenerationResult, Turn
from store import ACTIVE_JOB_STATUSES, Conversation, JobRecord, Store

from .config import Config
from .delivery import Delivery, DeliveryForbidden, Member
from .errors import failure_text
from .metrics import Metrics
from .models import size_refusal
from .jobspec import MAX_STARTS, Job, JobSpec, Options, job_options, spec_from_record
from .queue import InProcessQueue, Ticket
from .quota import LimitError, QuotaKeeper, Reservation
from .status import show_status

if TYPE_CHECKING:
    from .durable import DurableQueue

log = logging.getLogger(__name__)

class JobRunner:
    def __init__(self, *, store: Store, providers: Any, quota: QuotaKeeper, config: Config,
                 metrics: Metrics | None = None, durable: DurableQueue | None = None,
                 delivery_for: Callable[[JobRecord], Delivery] | None = None) -> None:
        self.store, self.providers, self.quota, self.config = store, providers, quota, config
        # PostgreSQL: jobs go through the durable queue, and a worker rebuilds a job's delivery from
        # the stored address (the bot passes both in; SQLite runs everything in this process).
        self.durable, self.delivery_for = durable, delivery_for
        self.metrics = metrics or Metrics()
        self.metrics.jobs_running.set_function(lambda: self.counts()[0])
        self.metrics.jobs_queued.set_function(lambda: self.counts()[1])
        self.queue = InProcessQueue(config.max_concurrent_jobs)
        self.jobs: dict[str, Job] = {}  # jobs not yet finished
        self._thread_tasks: set[asyncio.Task] = set()  # threads still being created for delivered results
        self.accepting = True

    # -- starting a job ------------------------------------------------------------------------

    @asynccontextmanager
    async def place(self, key: object | None) -> AsyncIterator[Ticket]:
        """A place in a lane (None: a lane of its own), taken before the first await so arrival
        order is kept; given back with its quota unless a job was submitted on it."""
        ticket = self.queue.place(key)
        try:
            yield ticket
        finally:
            if ticket.job is None:  # admitted perhaps, but no job was started
                self.quota.settle(ticket.reservation, "released")
                ticket.release()

    async def admit(self, ticket: Ticket, user: Member, guild_id: int | None, kind: str,
                    options: Options) -> Reservation:
        """Check the member's limits and reserve their quota atomically; raises LimitError with the
        reason and when it resets. The ticket holds the reservation until `submit`."""
        if not self.accepting:
            raise LimitError("The bot is restarting; try again in a minute.")
        refusal = size_refusal(self.providers, options.provider, options.resolution)
        if refusal:
            raise LimitError(refusal)
        ticket.reservation = await self.quota.admit(user, guild_id, kind, options)
        return ticket.reservation

    async def submit(self, ticket: Ticket, spec: JobSpec, delivery: Delivery) -> Job:
        """Store the job and its request, show the queued status, and start it in the background."""
        store = self.store
        conv = spec.conversation
        if conv is None:
            # A description is a conversation of its own, even in a DM (which is otherwise one).
            channel_id = None if spec.kind == "describe" else delivery.conversation_channel_id
            conv = await store.create_conversation(owner_id=spec.user.id, guild_id=spec.guild_id,
                                                   channel_id=channel_id)
            # Later turns in the thread reuse this job's shape, resolution and provider.
            await store.update_options(conv.id, {k: v for k, v in spec.options.to_dict().items() if k != "count"})
            spec = replace(spec, conversation=conv, parent=None)
        user_turn = await store.add_turn(conversation_id=conv.id, parent_id=None, role="user",
                                         text=spec.prompt, images=spec.images)
        job = Job(id=secrets.token_hex(6), spec=spec, delivery=delivery)
        record = JobRecord(id=job.id, kind=spec.kind, status="queued", user_id=spec.user.id, guild_id=spec.guild_id,
                           channel_id=delivery.channel_id, message_id=None, conversation_id=conv.id,
                           user_turn_id=user_turn, model_turn_id=None, options=job_options(spec))
        usage_id = ticket.reservation.usage_id if ticket.reservation else None
        if self.durable is not None:
            return await self._enqueue(ticket, job, record, usage_id)
        await store.create_job(record, usage_id=usage_id)
        self.jobs[job.id] = job
        job.reservation, ticket.reservation = ticket.reservation, None
        ticket.job = job
        job.task = asyncio.create_task(self._run(job, user_turn, ticket), name=f"job-{job.id}")
        return job

    async def _enqueue(self, ticket: Ticket, job: Job, record: JobRecord, usage_id: int | None) -> Job:
        """PostgreSQL: the job goes into the durable queue, and a worker (perhaps another process's)
        runs it. Turns of a conversation enter the queue in the order they arrived here."""
        await ticket.wait_turn()
        await job.delivery.status("⏳ In the queue…", job.id)  # in a thread, the status message to edit
        record = replace(record, delivery=job.delivery.address())
        conversation_id = job.spec.conversation.id
        await self.store.create_job(record, usage_id=usage_id, enqueue=lambda tx: self.durable.enqueue(
            tx.connection, job.id, conversation_id))
        ticket.reservation, ticket.job = None, job  # the job's now, whichever worker runs it
        ticket.release()
        return job

    async def run_stored(self, job_id: str, starts: int) -> None:
        """A worker runs a job from the durable queue (`starts`: how often it was started before)."""
        record = await self.store.job(job_id)
        # A job that finished, or was cancelled, is not run again; one that finished but whose result
        # was never posted (its worker died in between) is: its member gets exactly one result.
        if record is None or not (record.status in ACTIVE_JOB_STATUSES
                                  or (record.status == "done" and record.message_id is None)):
            return
        spec = await spec_from_record(self.store, record)
        job = Job(id=job_id, spec=spec, delivery=self.delivery_for(record), task=asyncio.current_task(),
                  reservation=await self._stored_reservation(record))
        if spec is None or starts >= MAX_STARTS:
            why = ("That conversation was deleted." if spec is None else
                   "This job was stopped several times (its workers stopped); press Reroll to try again.")
            await self._finish_failed(job, "failed", why, retry=spec is not None)
            self.quota.settle(job.reservation, "failed", job_id=job_id)
            return
        self.jobs[job_id] = job
        await self._run(job, record.user_turn_id, self.queue.place(None))

    async def _stored_reservation(self, record: JobRecord) -> Reservation | None:
        """The reservation a queued job holds, for the process that settles it (only its usage row
        and member matter then)."""
        usage_id = await self.store.job_usage(record.id)
        return None if usage_id is None else Reservation(usage_id, record.user_id, record.guild_id or 0, "", "", 0, 0.0)

    async def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is not None and job.task is not None and not job.task.done():
            job.task.cancel()
            return True
        record = await self.store.job(job_id) if self.durable is not None else None
        if record is None or record.queue_id is None or record.status not in ACTIVE_JOB_STATUSES:
            return False
        if await self.durable.cancel(record.queue_id):  # it had not started: nobody else will say so
            await self.store.update_job(job_id, status="cancelled", error="Cancelled.")
            self.quota.settle(await self._stored_reservation(record), "cancelled", job_id=job_id)
            await self.delivery_for(record).failure(job_id, "Cancelled.", retry=False)
        return True  # a running one: its worker stops it and says so

    def position(self, job: Job) -> int:
        return self.queue.position(job)

    def counts(self) -> tuple[int, int]:
        """(jobs running, jobs waiting for their turn or a slot) in this process."""
        running = sum(job.state == "running" for job in self.jobs.values())
        return running, len(self.jobs) - running

    # -- running -------------------------------------------------------------------------------

    async def _run(self, job: Job, user_turn: int, ticket: Ticket) -> None:
        status_task = asyncio.create_task(show_status(self, job, ticket))
        outcome = "failed"  # for the usage record, unless the job was charged
        delivered = False
        try:
            await ticket.wait_turn()
            job.state = "queued"
            async with self.queue.slot(job):
                job.state, job.started = "running", time.monotonic()
                await self.store.update_job(job.id, status="running")
                await self._generate(job, user_turn)
        except asyncio.CancelledError:
            outcome = "cancelled" if self.accepting else "interrupted"
            if not self.accepting and self.durable is not None:
                outcome = None  # handed back to the queue, reservation and all: another worker runs it
                await self._hand_back(job)
            if not self.accepting:
                raise  # shutting down: _interrupt records it and tells the member
            await self._finish_failed(job, "cancelled", "Cancelled.")
        except DeliveryForbidden:
            log.warning("job %s: missing permission in channel %s", job.id, job.delivery.channel_id)
            await self._finish_failed(job, "failed", "The bot is not allowed to post images here (it needs the "
                                      "Send Messages and Attach Files permissions); ask a server admin.")
        except ProviderError as exc:
            log.info("job %s failed: %s (%s)", job.id, type(exc).__name__, exc.detail or exc)
            outcome = "refused" if isinstance(exc, RefusedError) else "failed"
            # A refusal is final (the same request would be refused again); an empty answer that
            # gives no reason is worth another try.
            retry = not isinstance(exc, RefusedError) or (isinstance(exc, NoImageError) and not exc.model_text)
            self.metrics.provider_errors.labels(exc.provider or "?", type(exc).__name__).inc()
            await self._finish_failed(job, "failed", failure_text(exc, details=self.config.show_model_info),
                                      retry=retry)
        except Exception:
            log.exception("job %s crashed", job.id)
            await self._finish_failed(job, "failed", "Something went wrong on the bot's side; the error was logged.",
                                      retry=True)
        else:
            delivered = True
        finally:
            status_task.cancel()
            self.metrics.jobs_finished.labels("done" if delivered else outcome or "handed_back").inc()
            if outcome is not None:
                self.quota.settle(job.reservation, outcome, job_id=job.id)
            ticket.release()
            self.jobs.pop(job.id, None)

    async def _generate(self, job: Job, user_turn: int) -> None:
        store, spec = self.store, job.spec
        conv = await store.conversation(spec.conversation.id) or spec.conversation
        parent = conv.head_turn_id if spec.parent == "head" else spec.parent
        await store.set_turn_parent(user_turn, parent)
        history = await store.history(parent, self.config.history_turns)
        request = GenerationRequest(
            prompt=spec.prompt, images=spec.images,
            history=tuple(Turn(t.role, t.text, t.images, t.provider_state) for t in history),
            aspect_ratio=spec.options.aspect_ratio, resolution=spec.options.resolution,
            count=spec.options.count)
        result = await self._call_provider(request, spec, job)
        self.metrics.generation_seconds.labels(result.provider, result.model).observe(result.seconds)
        log.info("job %s: %s/%s answered %d image(s), %d bytes, in %.2f s", job.id, result.provider,
                 result.model, len(result.images), sum(len(i.data) for i in result.images), result.seconds)
        model_turn = await store.finish_job_with_turn(
            job.id, conversation_id=conv.id, parent_id=user_turn, text=result.text, images=result.images,
            provider_state=result.provider_state, provider=result.provider, model=result.model, make_head=True)
        cost = await self.quota.charge(job, result)
        async with job.lock:
            job.final = True
            message_id = await job.delivery.result(job.id, spec.title or spec.prompt, spec.options.resolution, result,
                                                   time.monotonic() - job.started, cost=cost,
                                                   waited=time.monotonic() - job.created)
        await store.set_turn_message(model_turn, message_id)
        await store.update_job(job.id, message_id=message_id)
        await self._open_thread(conv, job, message_id)

    async def _call_provider(self, request: GenerationRequest, spec: JobSpec, job: Job) -> GenerationResult:
        """The providers' answer. /describe wants words, not a picture: a text-only answer (which an
        image job treats as a refusal) is its result, and it is charged as text (no images)."""
        try:
            result = await self.providers.generate(request, provider=spec.options.provider, on_progress=job.on_progress)
        except NoImageError as exc:
            if spec.kind != "describe" or not (exc.model_text or "").strip():
                raise
            provider = exc.provider or self.providers.names[0]
            return GenerationResult(images=[], text=exc.model_text.strip(), provider=provider,
                                    model=self.providers.get(provider).config.model, usage={})
        if spec.kind == "describe":  # a picture drawn anyway is not what was asked for
            if not result.text.strip():
                raise NoImageError("The model did not describe the image.", provider=result.provider)
            result.images = []
        return result

    async def _open_thread(self, conv: Conversation, job: Job, message_id: int) -> None:
        """A result in a regular channel starts a thread where the conversation goes on."""
        if job.spec.kind == "describe":
            return
        if conv.channel_id is not None or not self.config.threads or not job.delivery.can_open_thread:
            return
        # A thread started on a message takes that message's id: claim it before the thread exists,
        # so a member's first message in the new thread already finds its conversation.
        await self.store.attach_channel(conv.id, message_id)
        # Discord paces thread creation per channel: the thread follows in the background, so that
        # the job's slot (and the results behind it) never waits for it.
        task = asyncio.create_task(self._create_thread(conv, job, message_id))
        self._thread_tasks.add(task)
        task.add_done_callback(self._thread_tasks.discard)

    async def _create_thread(self, conv: Conversation, job: Job, message_id: int) -> None:
        try:
            if not await job.delivery.open_thread(job.spec.prompt, message_id, conv.id):
                await self.store.attach_channel(conv.id, None)
        except Exception:  # no job is left to report it: log it
            log.exception("could not start a thread on %s", message_id)

    async def _hand_back(self, job: Job) -> None:
        """A stopping worker's unfinished job goes back to the queue; the member sees it waits again."""
        await self.store.update_job(job.id, status="queued")
        async with job.lock:
            job.final = True
            await job.delivery.status("⏳ In the queue again (a worker restarted)…", job.id)

    async def _finish_failed(self, job: Job, status: str, text: str, *, retry: bool = False) -> None:
        try:
            await self.store.update_job(job.id, status=status, error=text)
        except Exception:
            log.exception("could not record the outcome of job %s", job.id)
        async with job.lock:
            job.final = True
            await job.delivery.failure(job.id, f"{job.spec.user.mention} {text}" if status != "cancelled" else text,
                                       retry=retry)

    # -- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> list[JobRecord]:
        """Reservations and jobs that processes now gone left behind (never a live process's) charge
        nothing and are marked interrupted; returns those jobs so their members can be told."""
        if self.durable is not None:  # the queue hands their jobs to live workers instead
            await self.durable.retry_stalled()
            await self.store.release_stale_reservations()
            return []
        jobs = await self.store.mark_active_jobs("interrupted", "The bot stopped while this job ran.")
        await self.store.release_stale_reservations()
        return jobs

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, give running jobs `grace` seconds, then interrupt the rest and tell their members."""
        self.accepting = False
        if self.durable is not None:  # queued jobs wait in the database; running ones finish or go back
            await self.durable.stop_worker()
        running = [j.task for j in self.jobs.values() if j.task and j.state == "running"]
        queued = [j for j in self.jobs.values() if j.state != "running"]
        for job in queued:
            await self._interrupt(job)
        if running:
            await asyncio.wait(running, timeout=grace)
        for job in list(self.jobs.values()):
            await self._interrupt(job)
        if self._thread_tasks:  # threads of delivered results, with their settings cards
            await asyncio.wait(self._thread_tasks, timeout=10)
        await self.quota.drain()

    async def _interrupt(self, job: Job) -> None:
        if job.task and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        await self.store.update_job(job.id, status="interrupted", error="The bot restarted.")
        job.final = True
        await job.delivery.failure(job.id, f"{job.spec.user.mention} The bot is restarting, so this job was "
                                   "stopped. Press Reroll to run it again.", retry=True)
