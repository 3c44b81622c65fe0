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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from providers.errors import NoImageError, ProviderError, RefusedError
from providers.models import GenerationRequest, ImageData, Turn
from store import Conversation, JobRecord, Store

from .config import Config
from .delivery import Delivery, DeliveryForbidden, Member
from .metrics import Metrics
from .queue import InProcessQueue, Ticket
from .quota import LimitError, QuotaKeeper, Reservation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    aspect_ratio: str | None = None
    resolution: str | None = None
    count: int = 1
    provider: str | None = None

    def to_dict(self) -> dict:
        return {"aspect_ratio": self.aspect_ratio, "resolution": self.resolution, "count": self.count,
                "provider": self.provider}

    @classmethod
    def from_dict(cls, data: dict) -> Options:
        return cls(data.get("aspect_ratio"), data.get("resolution"), int(data.get("count") or 1),
                   data.get("provider"))


@dataclass
class JobSpec:
    """What to generate. `parent` is a turn id, None for a fresh start, or "head" for the
    conversation's latest turn at the moment the job starts (so queued thread turns chain)."""

    kind: str  # imagine, edit, turn, reroll, vary, upscale, context
    user: Member
    guild_id: int | None
    prompt: str
    images: tuple[ImageData, ...] = ()
    options: Options = field(default_factory=Options)
    conversation: Conversation | None = None
    parent: int | str | None = "head"


@dataclass
class Job:
    id: str
    spec: JobSpec
    delivery: Delivery
    started: float = 0.0
    state: str = "lane"  # lane (waiting for the previous turn), queued (for a slot), running
    task: asyncio.Task | None = None
    # Status updates and the final answer take turns on the message; once final, no more status.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: bool = False
    reservation: Reservation | None = None


class JobRunner:
    def __init__(self, *, store: Store, providers: Any, quota: QuotaKeeper, config: Config,
                 metrics: Metrics | None = None) -> None:
        self.store, self.providers, self.quota, self.config = store, providers, quota, config
        self.metrics = metrics or Metrics()
        self.metrics.jobs_running.set_function(lambda: self.counts()[0])
        self.metrics.jobs_queued.set_function(lambda: self.counts()[1])
        self.queue = InProcessQueue(config.max_concurrent_jobs)
        self.jobs: dict[str, Job] = {}  # jobs not yet finished
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
        ticket.reservation = await self.quota.admit(user, guild_id, kind, options)
        return ticket.reservation

    async def submit(self, ticket: Ticket, spec: JobSpec, delivery: Delivery) -> Job:
        """Store the job and its request, show the queued status, and start it in the background."""
        store = self.store
        conv = spec.conversation
        if conv is None:
            conv = await store.create_conversation(owner_id=spec.user.id, guild_id=spec.guild_id,
                                                   channel_id=delivery.conversation_channel_id)
            # Later turns in the thread reuse this job's shape, resolution and provider.
            await store.update_options(conv.id, {k: v for k, v in spec.options.to_dict().items() if k != "count"})
            spec = replace(spec, conversation=conv, parent=None)
        user_turn = await store.add_turn(conversation_id=conv.id, parent_id=None, role="user",
                                         text=spec.prompt, images=spec.images)
        job = Job(id=secrets.token_hex(6), spec=spec, delivery=delivery)
        await store.create_job(JobRecord(
            id=job.id, kind=spec.kind, status="queued", user_id=spec.user.id, guild_id=spec.guild_id,
            channel_id=delivery.channel_id, message_id=None, conversation_id=conv.id,
            user_turn_id=user_turn, model_turn_id=None,
            options={**spec.options.to_dict(), "prompt": spec.prompt}))
        self.jobs[job.id] = job
        job.reservation, ticket.reservation = ticket.reservation, None
        ticket.job = job
        job.task = asyncio.create_task(self._run(job, user_turn, ticket), name=f"job-{job.id}")
        return job

    async def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.task is None or job.task.done():
            return False
        job.task.cancel()
        return True

    def position(self, job: Job) -> int:
        return self.queue.position(job)

    def counts(self) -> tuple[int, int]:
        """(jobs running, jobs waiting for their turn or a slot) in this process."""
        running = sum(job.state == "running" for job in self.jobs.values())
        return running, len(self.jobs) - running

    # -- running -------------------------------------------------------------------------------

    async def _run(self, job: Job, user_turn: int, ticket: Ticket) -> None:
        status_task = asyncio.create_task(self._show_status(job, ticket))
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
            await self._finish_failed(job, "failed", exc.user_message, retry=retry)
        except Exception:
            log.exception("job %s crashed", job.id)
            await self._finish_failed(job, "failed", "Something went wrong on the bot's side; the error was logged.",
                                      retry=True)
        else:
            delivered = True
        finally:
            status_task.cancel()
            self.metrics.jobs_finished.labels("done" if delivered else outcome).inc()
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
        result = await self.providers.generate(request, provider=spec.options.provider)
        self.metrics.generation_seconds.labels(result.provider, result.model).observe(result.seconds)
        log.info("job %s: %s/%s answered %d image(s), %d bytes, in %.2f s", job.id, result.provider,
                 result.model, len(result.images), sum(len(i.data) for i in result.images), result.seconds)
        model_turn = await store.finish_job_with_turn(
            job.id, conversation_id=conv.id, parent_id=user_turn, text=result.text, images=result.images,
            provider_state=result.provider_state, provider=result.provider, model=result.model, make_head=True)
        await self.quota.charge(job, result)
        async with job.lock:
            job.final = True
            message_id = await job.delivery.result(job.id, spec.prompt, spec.options.resolution, result,
                                                   time.monotonic() - job.started)
        await store.set_turn_message(model_turn, message_id)
        await store.update_job(job.id, message_id=message_id)
        await self._open_thread(conv, job, message_id)

    async def _open_thread(self, conv: Conversation, job: Job, message_id: int) -> None:
        """A result in a regular channel starts a thread where the conversation goes on."""
        if conv.channel_id is not None or not self.config.threads or not job.delivery.can_open_thread:
            return
        # A thread started on a message takes that message's id: claim it before the thread exists,
        # so a member's first message in the new thread already finds its conversation.
        await self.store.attach_channel(conv.id, message_id)
        if not await job.delivery.open_thread(job.spec.prompt, message_id, conv.id):
            await self.store.attach_channel(conv.id, None)

    async def _finish_failed(self, job: Job, status: str, text: str, *, retry: bool = False) -> None:
        try:
            await self.store.update_job(job.id, status=status, error=text)
        except Exception:
            log.exception("could not record the outcome of job %s", job.id)
        async with job.lock:
            job.final = True
            await job.delivery.failure(job.id, f"{job.spec.user.mention} {text}" if status != "cancelled" else text,
                                       retry=retry)

    async def _show_status(self, job: Job, ticket: Ticket) -> None:
        """Keep the status line fresh: queue position while waiting, elapsed time while running."""
        await ticket.wait_to_post()
        while True:
            if job.state == "running":
                elapsed = time.monotonic() - job.started
                text = f"🎨 Generating… {elapsed:.0f} s" if elapsed >= 1 else "🎨 Generating…"
            elif job.state == "queued":
                text = f"⏳ In the queue, position {self.position(job) or 1}…"
            else:
                text = "⏳ Waiting for the previous turn in this conversation…"
            async with job.lock:
                if job.final:
                    return
                try:
                    await job.delivery.status(text, job.id)
                finally:
                    ticket.posted()
            await asyncio.sleep(self.config.status_interval)

    # -- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> list[JobRecord]:
        """Reservations and jobs that processes now gone left behind (never a live process's) charge
        nothing and are marked interrupted; returns those jobs so their members can be told."""
        await self.store.release_stale_reservations()
        return await self.store.mark_active_jobs("interrupted", "The bot stopped while this job ran.")

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, give running jobs `grace` seconds, then interrupt the rest and tell their members."""
        self.accepting = False
        running = [j.task for j in self.jobs.values() if j.task and j.state == "running"]
        queued = [j for j in self.jobs.values() if j.state != "running"]
        for job in queued:
            await self._interrupt(job)
        if running:
            await asyncio.wait(running, timeout=grace)
        for job in list(self.jobs.values()):
            await self._interrupt(job)
        await self.quota.drain()

    async def _interrupt(self, job: Job) -> None:
        if job.task and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        await self.store.update_job(job.id, status="interrupted", error="The bot restarted.")
        job.final = True
        await job.delivery.failure(job.id, f"{job.spec.user.mention} The bot is restarting, so this job was "
                                   "stopped. Press Reroll to run it again.", retry=True)
