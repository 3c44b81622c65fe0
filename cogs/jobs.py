"""The job runner: every generation, whatever started it, runs through here.

A job waits for its turn twice: in its conversation's lane (turns of one thread run one at a
time, in arrival order) and for one of MAX_CONCURRENT_JOBS slots (showing its queue position).
Then it builds the request from the stored conversation, calls the providers, stores the answer
and the job's outcome in one transaction, and turns its status message into the result.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import discord

from providers.errors import NoImageError, ProviderError, RefusedError
from providers.models import GenerationRequest, ImageData, Turn
from storage import Conversation, JobRecord

from . import render
from .buttons import cancel_view, result_view
from .quota import LimitError, QuotaKeeper, Reservation
from .replies import Reply

if TYPE_CHECKING:
    from bot import ImageBot

log = logging.getLogger(__name__)

# Discord allows about 5 edits of a message per 2 s (interaction webhooks) or per 5 s (a channel's
# messages), and discord.py holds later requests back once a bucket is spent: with one status edit per
# 1.5 s at most, the result always finds room. (Cancelling a pending edit instead is unsafe: discord.py's
# webhook lock is never released when a request is cancelled while it waits out a bucket.)
STATUS_EDIT_GAP = 1.5


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
    user: discord.abc.User
    guild_id: int | None
    prompt: str
    images: tuple[ImageData, ...] = ()
    options: Options = field(default_factory=Options)
    conversation: Conversation | None = None
    parent: int | str | None = "head"


class Ticket:
    """A reserved place in a conversation lane, taken the moment a message or command arrives.

    A turn runs when the previous turn of its lane is done, and posts its status message only once
    the previous turn's exists, so a thread's answers appear in the order their prompts came in.
    """

    def __init__(self, runner: JobRunner, key: object, previous: Ticket | None) -> None:
        self._runner, self.key, self._previous = runner, key, previous
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._posted = loop.create_future()
        self.reservation: Reservation | None = None  # the member's quota, until a job takes it

    async def wait_to_post(self) -> None:
        if self._previous is not None:
            await asyncio.shield(self._previous._posted)

    async def wait_turn(self) -> None:
        if self._previous is not None:
            await asyncio.shield(self._previous._done)
            self._previous = None  # done implies posted; let the finished chain be collected

    def posted(self) -> None:
        if not self._posted.done():
            self._posted.set_result(None)

    def release(self) -> None:
        self._runner.quota.settle(self.reservation, "released")  # admitted, but no job was started
        self.reservation = None
        self.posted()
        if not self._done.done():
            self._done.set_result(None)
        if self._runner._lanes.get(self.key) is self:
            del self._runner._lanes[self.key]


@dataclass
class Job:
    id: str
    spec: JobSpec
    reply: Reply
    started: float = 0.0
    state: str = "lane"  # lane (waiting for the previous turn), queued (for a slot), running
    task: asyncio.Task | None = None
    # Status updates and the final answer take turns on the message; once final, no more status.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: bool = False
    reservation: Reservation | None = None


class JobRunner:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.settings = bot.settings
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_jobs)
        self._lanes: dict[object, Ticket] = {}  # lane key -> its newest ticket
        self._waiting: list[Job] = []  # jobs waiting for a slot, in order
        self.jobs: dict[str, Job] = {}  # jobs not yet finished
        self.accepting = True
        self.quota = QuotaKeeper(bot)
        self._thread_tasks: set[asyncio.Task] = set()  # threads still being created for delivered results

    # -- admission -------------------------------------------------------------------------------

    def reserve(self, key: object | None) -> Ticket:
        """Take a place in a lane now, before any await, so arrival order is kept."""
        key = key if key is not None else object()
        ticket = Ticket(self, key, self._lanes.get(key))
        self._lanes[key] = ticket
        return ticket

    async def admit(self, user: discord.abc.User, guild_id: int | None, kind: str, options: Options,
                    ticket: Ticket) -> Reservation:
        """Check the member's limits and reserve their quota atomically; raises LimitError with the
        reason and when it resets. The ticket holds the reservation until `submit` hands it to the
        job; releasing the ticket first gives it back."""
        if not self.accepting:
            raise LimitError("The bot is restarting; try again in a minute.")
        ticket.reservation = await self.quota.admit(user, guild_id, kind, options)
        return ticket.reservation

    async def submit(self, spec: JobSpec, reply: Reply, ticket: Ticket) -> Job:
        """Store the job and its request, show the queued status, and start it in the background."""
        storage = self.bot.storage
        conv = spec.conversation
        if conv is None:
            conv = await storage.create_conversation(owner_id=spec.user.id, guild_id=spec.guild_id,
                                                     channel_id=_conversation_channel(reply.channel))
            # Later turns in the thread reuse this job's shape, resolution and provider.
            await storage.update_settings(conv.id, {k: v for k, v in spec.options.to_dict().items() if k != "count"})
            spec = replace(spec, conversation=conv, parent=None)
        user_turn = await storage.add_turn(conversation_id=conv.id, parent_id=None, role="user",
                                           text=spec.prompt, images=spec.images)
        job = Job(id=secrets.token_hex(6), spec=spec, reply=reply)
        await storage.create_job(JobRecord(
            id=job.id, kind=spec.kind, status="queued", user_id=spec.user.id, guild_id=spec.guild_id,
            channel_id=getattr(reply.channel, "id", None), message_id=None, conversation_id=conv.id,
            user_turn_id=user_turn, model_turn_id=None,
            options={**spec.options.to_dict(), "prompt": spec.prompt}))
        self.jobs[job.id] = job
        job.reservation, ticket.reservation = ticket.reservation, None
        job.task = asyncio.create_task(self._run(job, user_turn, ticket), name=f"job-{job.id}")
        return job

    async def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.task is None or job.task.done():
            return False
        job.task.cancel()
        return True

    def position(self, job: Job) -> int:
        return self._waiting.index(job) + 1 if job in self._waiting else 0

    # -- running -------------------------------------------------------------------------------

    async def _run(self, job: Job, user_turn: int, ticket: Ticket) -> None:
        storage = self.bot.storage
        status_task = asyncio.create_task(self._show_status(job, ticket))
        outcome = "failed"  # for the usage record, unless the job was charged
        try:
            await ticket.wait_turn()
            job.state = "queued"
            self._waiting.append(job)
            try:
                await self._slots.acquire()
            finally:
                self._waiting.remove(job)
            try:
                job.state, job.started = "running", time.monotonic()
                await storage.update_job(job.id, status="running")
                await self._generate(job, user_turn)
            finally:
                self._slots.release()
        except asyncio.CancelledError:
            outcome = "cancelled" if self.accepting else "interrupted"
            if not self.accepting:
                raise  # shutting down: _interrupt records it and tells the member
            await self._finish_failed(job, "cancelled", "Cancelled.")
        except discord.Forbidden as exc:
            log.warning("job %s: missing permission in channel %s (%s)", job.id, getattr(job.reply.channel, "id", None),
                        exc.code)
            await self._finish_failed(job, "failed", "The bot is not allowed to post images here (it needs the "
                                      "Send Messages and Attach Files permissions); ask a server admin.")
        except ProviderError as exc:
            log.info("job %s failed: %s (%s)", job.id, type(exc).__name__, exc.detail or exc)
            outcome = "refused" if isinstance(exc, RefusedError) else "failed"
            # A refusal is final (the same request would be refused again); an empty answer that
            # gives no reason is worth another try.
            retry = not isinstance(exc, RefusedError) or (isinstance(exc, NoImageError) and not exc.model_text)
            await self._finish_failed(job, "failed", _failure_text(exc), retry=retry)
        except Exception:
            log.exception("job %s crashed", job.id)
            await self._finish_failed(job, "failed", "Something went wrong on the bot's side; the error was logged.",
                                      retry=True)
        finally:
            status_task.cancel()
            self.quota.settle(job.reservation, outcome, job_id=job.id)
            ticket.release()
            self.jobs.pop(job.id, None)

    async def _generate(self, job: Job, user_turn: int) -> None:
        storage, spec, settings = self.bot.storage, job.spec, self.settings
        conv = await storage.conversation(spec.conversation.id) or spec.conversation
        parent = conv.head_turn_id if spec.parent == "head" else spec.parent
        await storage.set_turn_parent(user_turn, parent)
        history = await storage.history(parent, settings.history_turns)
        request = GenerationRequest(
            prompt=spec.prompt, images=spec.images,
            history=tuple(Turn(t.role, t.text, t.images, t.provider_state) for t in history),
            aspect_ratio=spec.options.aspect_ratio, resolution=spec.options.resolution,
            count=spec.options.count)
        result = await self.bot.providers.generate(request, provider=spec.options.provider)
        log.info("job %s: %s/%s answered %d image(s), %d bytes, in %.2f s", job.id, result.provider,
                 result.model, len(result.images), sum(len(i.data) for i in result.images), result.seconds)
        model_turn = await storage.finish_job_with_turn(
            job.id, conversation_id=conv.id, parent_id=user_turn, text=result.text, images=result.images,
            provider_state=result.provider_state, provider=result.provider, model=result.model, make_head=True)
        await self.quota.charge(job, result)
        message = await self._deliver(job, result)
        await storage.set_turn_message(model_turn, message.id)
        await storage.update_job(job.id, message_id=message.id)
        await self._open_thread(conv, job, message)

    async def _deliver(self, job: Job, result) -> discord.Message:
        """Post the result; if Discord still finds a file too large, re-encode smaller and try again."""
        spec, limit = job.spec, job.reply.upload_limit
        for attempt in range(3):
            files, notes = await render.prepare(result.images, spec.prompt, limit)
            if result.attempts:
                notes.append(f"{', '.join(result.attempts)} failed, so {result.provider} answered instead.")
            content = render.caption(prompt=spec.prompt, model=result.model, provider=result.provider,
                                     resolution=spec.options.resolution, seconds=time.monotonic() - job.started,
                                     model_text=result.text, notes=notes, author_mention=spec.user.mention)
            try:
                async with job.lock:
                    job.final = True
                    return await job.reply.deliver(content, files, result_view(job.id))
            except discord.HTTPException as exc:
                if (exc.status != 413 and exc.code != 40005) or attempt == 2:
                    raise
                log.info("job %s: Discord refused %d bytes of files; re-encoding under %d", job.id,
                         sum(len(f.data) for f in files), limit // 2)
                limit //= 2

    async def _open_thread(self, conv: Conversation, job: Job, message: discord.Message) -> None:
        """A result in a regular channel starts a thread where the conversation goes on."""
        channel = job.reply.channel
        if conv.channel_id is not None or not self.settings.threads or not isinstance(channel, discord.TextChannel):
            return
        # A thread started on a message takes that message's id: claim it before the thread exists,
        # so a member's first message in the new thread already finds its conversation.
        await self.bot.storage.attach_channel(conv.id, message.id)
        # Discord paces thread creation per channel: the thread follows in the background, so that
        # the job's slot (and the results behind it) never waits for it.
        task = asyncio.create_task(self._create_thread(conv, job, message, channel))
        self._thread_tasks.add(task)
        task.add_done_callback(self._thread_tasks.discard)

    async def _create_thread(self, conv: Conversation, job: Job, message: discord.Message,
                             channel: discord.TextChannel) -> None:
        try:
            thread = await channel.create_thread(name=render._trim(job.spec.prompt, 90) or "Image",
                                                 message=message, auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.warning("could not start a thread on %s: %s", message.id, exc.status)
            await self.bot.storage.attach_channel(conv.id, None)
            why = "the bot may not create threads here" if exc.status == 403 else "Discord refused it"
            try:
                await job.reply.notice(f"I could not start a thread for this image ({why}); use the buttons "
                                       "or reply with /edit to keep refining it.")
            except discord.HTTPException:
                pass
        except Exception:  # no job is left to report it: log it
            log.exception("could not start a thread on %s", message.id)
        else:
            self.bot.dispatch("conversation_thread", thread, conv.id)  # cogs.preferences posts its settings card

    async def _finish_failed(self, job: Job, status: str, text: str, *, retry: bool = False) -> None:
        try:
            await self.bot.storage.update_job(job.id, status=status, error=text)
        except Exception:
            log.exception("could not record the outcome of job %s", job.id)
        try:
            async with job.lock:
                job.final = True
                await job.reply.fail(f"{job.spec.user.mention} {text}" if status != "cancelled" else text,
                                     result_view(job.id, failed=True) if retry else None)
        except discord.HTTPException as exc:
            log.warning("could not tell the member about job %s: %s", job.id, exc.status)

    async def _show_status(self, job: Job, ticket: Ticket) -> None:
        """Keep the status line fresh: queue position while waiting, elapsed time while running."""
        await ticket.wait_to_post()
        shown = None  # an unchanged line is not worth one of the channel's few edits a second
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
                    if text != shown:
                        await job.reply.status(text, cancel_view(job.id))
                        shown = text
                except discord.HTTPException as exc:
                    log.debug("status update for %s failed: %s", job.id, exc.status)
                finally:
                    ticket.posted()
            await asyncio.sleep(max(self.settings.status_interval, STATUS_EDIT_GAP))

    # -- lifecycle -----------------------------------------------------------------------------

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
        await self.bot.storage.update_job(job.id, status="interrupted", error="The bot restarted.")
        try:
            job.final = True
            await job.reply.fail(f"{job.spec.user.mention} The bot is restarting, so this job was stopped. "
                                 "Press Reroll to run it again.", result_view(job.id, failed=True))
        except discord.HTTPException:
            pass


def _conversation_channel(channel) -> int | None:
    """A DM is one conversation by itself (a bot thread's conversation is found before submitting)."""
    if isinstance(channel, discord.DMChannel):
        return channel.id
    return None


def _failure_text(exc: ProviderError) -> str:
    return exc.user_message
