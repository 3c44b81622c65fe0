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
from providers.models import GenerationRequest, GenerationResult, ImageData, Progress, Turn
from store import Conversation, JobRecord, Store

from .config import Config
from .delivery import Delivery, DeliveryForbidden, Member
from .errors import failure_text
from .metrics import Metrics
from .models import size_refusal
from .queue import InProcessQueue, Ticket
from .quota import LimitError, QuotaKeeper, Reservation

log = logging.getLogger(__name__)

# Discord allows about 5 edits of a message per 2 s (interaction webhooks) or per 5 s (a channel's
# messages), and discord.py holds later requests back once a bucket is spent: with one status edit per
# 1.5 s at most, the result always finds room. (Cancelling a pending edit instead is unsafe: discord.py's
# webhook lock is never released when a request is cancelled while it waits out a bucket.)
STATUS_EDIT_GAP = 1.5
WORDS_SHOWN = 160  # characters of the model's latest words on the status line


def progress_lines(words: str, preview: bool) -> str:
    """The status line's second part while a streaming answer arrives."""
    lines = ""
    if preview:
        lines += "\n-# 🖼️ Draft preview: the final image replaces it"
    latest = " ".join(words.split())[-WORDS_SHOWN:].replace("`", "'")
    if latest:
        lines += f"\n-# 💭 {'…' if len(words) > WORDS_SHOWN else ''}{latest}"
    return lines


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

    kind: str  # imagine, edit, turn, reroll, remix, vary, upscale, context, describe (a text answer)
    user: Member
    guild_id: int | None
    prompt: str
    images: tuple[ImageData, ...] = ()
    options: Options = field(default_factory=Options)
    conversation: Conversation | None = None
    parent: int | str | None = "head"
    title: str = ""  # what the result's caption shows, when not the prompt sent (Vary, Upscale)
    subject: str = ""  # the member's own prompt that Vary and Upscale (and their rerolls) started from


@dataclass
class Job:
    id: str
    spec: JobSpec
    delivery: Delivery
    started: float = 0.0
    created: float = field(default_factory=time.monotonic)
    state: str = "lane"  # lane (waiting for the previous turn), queued (for a slot), running
    task: asyncio.Task | None = None
    # Status updates and the final answer take turns on the message; once final, no more status.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: bool = False
    reservation: Reservation | None = None
    # Live progress from a streaming answer: the model's words, and a draft image not shown yet.
    words: str = ""
    preview: ImageData | None = None
    shows_preview: bool = False  # a draft is on the status message
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_progress(self, progress: Progress) -> None:
        if progress.text:
            self.words = progress.text
        if progress.preview is not None:
            self.preview = progress.preview
        self.progressed.set()


class JobRunner:
    def __init__(self, *, store: Store, providers: Any, quota: QuotaKeeper, config: Config,
                 metrics: Metrics | None = None) -> None:
        self.store, self.providers, self.quota, self.config = store, providers, quota, config
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
        await store.create_job(JobRecord(
            id=job.id, kind=spec.kind, status="queued", user_id=spec.user.id, guild_id=spec.guild_id,
            channel_id=delivery.channel_id, message_id=None, conversation_id=conv.id,
            user_turn_id=user_turn, model_turn_id=None,
            options={**spec.options.to_dict(), "prompt": spec.prompt, "title": spec.title,
                     "subject": spec.subject}))
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
        shown = None  # an unchanged line is not worth one of the channel's few edits a second
        while True:
            preview, job.preview = job.preview, None  # a draft is uploaded once
            waiting_at_provider = self.providers.queue_position(job.task) if job.state == "running" else 0
            if waiting_at_provider:  # its gateway is busy (adaptive limit, Retry-After): an honest position
                text = f"⏳ In the queue, position {waiting_at_provider}…"
            elif job.state == "running":
                elapsed = time.monotonic() - job.started
                text = f"🎨 Generating… {elapsed:.0f} s" if elapsed >= 1 else "🎨 Generating…"
                text += progress_lines(job.words, preview is not None or job.shows_preview)
                job.shows_preview = job.shows_preview or preview is not None
            elif job.state == "queued":
                text = f"⏳ In the queue, position {self.position(job) or 1}…"
            else:
                text = "⏳ Waiting for the previous turn in this conversation…"
            async with job.lock:
                if job.final:
                    return
                try:
                    if text != shown or preview is not None:
                        await job.delivery.status(text, job.id, preview)
                        shown = text
                finally:
                    ticket.posted()
            edited = time.monotonic()
            try:  # the next refresh, or sooner when the stream brings something new ...
                await asyncio.wait_for(job.progressed.wait(), max(self.config.status_interval, STATUS_EDIT_GAP))
                job.progressed.clear()
            except asyncio.TimeoutError:
                pass
            # ... but never more than one edit per STATUS_EDIT_GAP
            await asyncio.sleep(max(0.0, edited + STATUS_EDIT_GAP - time.monotonic()))

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
