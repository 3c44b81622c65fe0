"""Live progress: a streaming answer's words and interim images, reported while it arrives.

The caller passes `on_progress` to ProviderRouter.generate / ProviderClient.generate; the client
sets it in ON_PROGRESS for the duration of that call (also seen by the concurrent calls of a
count > 1 fan-out), and each streamed attempt feeds its SSE events to a ProgressFeed. The feed asks
the wire format's `stream_progress` what each event shows, in order, off the loop for long events
(an image), and calls back with Progress(text=words so far, preview=interim image). Nothing here is
ever a result: the final answer is parsed from all events as before.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from types import ModuleType
from typing import Any, Callable

from .base import CpuRunner, ProviderConfig
from .models import ImageData, OnProgress, Progress
from .payload import Chunks, joined

log = logging.getLogger(__name__)

ON_PROGRESS: contextvars.ContextVar[OnProgress | None] = contextvars.ContextVar("on_progress", default=None)
TEXT_LIMIT = 4000  # characters of the model's words kept (the newest)


async def report(progress: Progress, name: str) -> None:
    """Call the caller's callback, if any; its failure never fails the generation."""
    callback = ON_PROGRESS.get()
    if callback is None:
        return
    try:
        result = callback(progress)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - a preview is never worth an answer
        log.warning("%s: progress callback failed: %s: %s", name, type(exc).__name__, exc)


async def report_drafts(drafts: list[ImageData], name: str) -> None:
    """Interim images told apart only once the whole answer was read (non-streamed answers)."""
    for draft in drafts:
        await report(Progress(preview=draft), name)


class ProgressFeed:
    """One streamed attempt: put() each SSE event as it arrives, close() at the end (waits until
    everything is reported, so previews come before the result), cancel() on failure."""

    def __init__(self, config: ProviderConfig, translator: ModuleType, cpu: CpuRunner) -> None:
        self._config, self._cpu = config, cpu
        self._parse: Callable[..., Any] | None = getattr(translator, "stream_progress", None)
        self._queue: asyncio.Queue[bytes | Chunks | None] = asyncio.Queue()
        self._state: dict[str, Any] = {}
        self._text = ""
        active = self._parse is not None and ON_PROGRESS.get() is not None
        self._task = asyncio.create_task(self._run()) if active else None

    def put(self, event: bytes | Chunks) -> None:
        if self._task is not None:
            self._queue.put_nowait(event)

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        assert self._parse is not None
        while (event := await self._queue.get()) is not None:
            try:
                if isinstance(event, Chunks):  # an image: decoded in a worker process
                    pieces, self._state = await self._cpu.run_process(_progress_of, self._parse, self._config,
                                                                event, self._state)
                else:
                    pieces, self._state = self._parse(self._config, event, self._state)
            except Exception as exc:  # noqa: BLE001 - an unreadable event is the final parser's business
                log.debug("%s: no progress from an event: %s", self._config.name, exc)
                continue
            for piece in pieces:
                if piece.text:
                    self._text = (self._text + piece.text)[-TEXT_LIMIT:]
                if piece.preview is not None:
                    log.info("%s: interim image (%s)", self._config.name, piece.preview)
                await report(Progress(text=self._text or None, preview=piece.preview), self._config.name)


# Module-level so that a worker process can run it (CpuRunner.run_process).
def _progress_of(parse: Callable[..., Any], config: ProviderConfig, event: bytes | Chunks,
                 state: dict[str, Any]) -> tuple[list[Progress], dict[str, Any]]:
    return parse(config, joined(event), state)
