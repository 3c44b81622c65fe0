"""Where jobs wait: their conversation's lane, then a slot.

The in-process queue of the embedded mode (one process, SQLite). A lane keeps a conversation's
turns one at a time in arrival order (different conversations run side by side); the slots cap how
many generations run at once, and the jobs waiting for one know their position. A deployment on
several machines puts a durable queue behind the same three steps (a place taken at arrival, the
turn, the slot).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class Ticket:
    """A reserved place in a lane, taken the moment a message or command arrives.

    A turn runs when the previous turn of its lane is done, and posts its status message only once
    the previous turn's exists, so a thread's answers appear in the order their prompts came in.
    """

    def __init__(self, queue: InProcessQueue, key: object, previous: Ticket | None) -> None:
        self._queue, self.key, self._previous = queue, key, previous
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._posted = loop.create_future()
        self.reservation: Any = None  # the member's quota, until a job takes it
        self.job: Any = None  # the job submitted on this place

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
        """The place is done with (its job finished, or none was started): the next may go."""
        self.posted()
        if not self._done.done():
            self._done.set_result(None)
        self._queue._leave(self)


class InProcessQueue:
    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._lanes: dict[object, Ticket] = {}  # lane key -> its newest ticket
        self._waiting: list[object] = []  # jobs waiting for a slot, in order

    def place(self, key: object | None) -> Ticket:
        """A place in the lane `key` (None: a lane of its own); call it before any await."""
        key = key if key is not None else object()
        ticket = Ticket(self, key, self._lanes.get(key))
        self._lanes[key] = ticket
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        if self._lanes.get(ticket.key) is ticket:
            del self._lanes[ticket.key]

    @asynccontextmanager
    async def slot(self, job: object) -> AsyncIterator[None]:
        """Wait for a free slot, in order, then hold it."""
        self._waiting.append(job)
        try:
            await self._slots.acquire()
        finally:
            self._waiting.remove(job)
        try:
            yield
        finally:
            self._slots.release()

    def position(self, job: object) -> int:
        """1 for the next job to get a slot; 0 when the job is not waiting for one."""
        return self._waiting.index(job) + 1 if job in self._waiting else 0
