"""What a job is: the member's request (`JobSpec`, with its `Options`), and the job in progress
(`Job`). A job taken by one process may run on another (PostgreSQL): `spec_from_record` rebuilds its
spec from the stored job, its conversation and the member's turn."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from providers.models import ImageData, Progress
from store import Conversation, JobRecord, Store

from .delivery import Delivery, Member
from .quota import Reservation

# A job from the durable queue started this many times without finishing (its workers died or stopped)
# is given up and its member told: a job that kills every worker it lands on must not go round for ever.
MAX_STARTS = 4


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


@dataclass(frozen=True)
class StoredMember:
    """The member of a job taken by another process: all a worker needs of them."""

    id: int

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


def job_options(spec: JobSpec) -> dict[str, Any]:
    """The stored job's options: enough to run it again (Reroll) or elsewhere (a worker)."""
    return {**spec.options.to_dict(), "prompt": spec.prompt, "title": spec.title, "subject": spec.subject,
            "parent": spec.parent}


async def spec_from_record(store: Store, record: JobRecord) -> JobSpec | None:
    """The spec of a stored job, None when its conversation or its member's turn is gone."""
    conv = await store.conversation(record.conversation_id) if record.conversation_id else None
    turn = await store.turn(record.user_turn_id) if record.user_turn_id else None
    if conv is None or turn is None:
        return None
    options = record.options
    return JobSpec(kind=record.kind, user=StoredMember(record.user_id), guild_id=record.guild_id, prompt=turn.text,
                   images=turn.images, options=Options.from_dict(options), conversation=conv,
                   parent=options.get("parent", "head"), title=options.get("title") or "",
                   subject=options.get("subject") or "")
