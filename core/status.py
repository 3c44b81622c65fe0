"""The status line of a job in progress: queue position while it waits, elapsed time and the model's
latest words (and a draft picture) while it runs. Edited no more often than Discord allows."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .jobspec import Job
from .queue import Ticket

if TYPE_CHECKING:
    from .jobs import JobRunner

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


async def show_status(runner: JobRunner, job: Job, ticket: Ticket) -> None:
    """Keep the status line fresh: queue position while waiting, elapsed time while running."""
    await ticket.wait_to_post()
    shown = None  # an unchanged line is not worth one of the channel's few edits a second
    while True:
        preview, job.preview = job.preview, None  # a draft is uploaded once
        waiting_at_provider = runner.providers.queue_position(job.task) if job.state == "running" else 0
        if waiting_at_provider:  # its gateway is busy (adaptive limit, Retry-After): an honest position
            text = f"⏳ In the queue, position {waiting_at_provider}…"
        elif job.state == "running":
            elapsed = time.monotonic() - job.started
            text = f"🎨 Generating… {elapsed:.0f} s" if elapsed >= 1 else "🎨 Generating…"
            text += progress_lines(job.words, preview is not None or job.shows_preview)
            job.shows_preview = job.shows_preview or preview is not None
        elif job.state == "queued":
            text = f"⏳ In the queue, position {runner.position(job) or 1}…"
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
            await asyncio.wait_for(job.progressed.wait(), max(runner.config.status_interval, STATUS_EDIT_GAP))
            job.progressed.clear()
        except asyncio.TimeoutError:
            pass
        # ... but never more than one edit per STATUS_EDIT_GAP
        await asyncio.sleep(max(0.0, edited + STATUS_EDIT_GAP - time.monotonic()))
