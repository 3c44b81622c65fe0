"""How many calls one provider gets at once: an adaptive limit, the gateway's Retry-After, a memory budget.

    budget = MemoryBudget(1024 * MiB)              # one per process, shared by every provider
    limiter = AdaptiveLimiter(max_limit=64, budget=budget)  # PROVIDER_<NAME>_MAX_CONCURRENT
    async with limiter.call(answer_cost("4K")):    # waits for a slot, the gate and the memory
        ...one upstream attempt...                 # success: the limit grows; overload: it halves
    await limiter.pause(retry_after)               # the gateway said when: nobody calls it before

AIMD (as TCP and Netflix's concurrency-limits): each success adds 1/limit (one slot per round of
`limit` successes), each 429/503/overloaded halves the limit, at most once per round: the calls
already in flight when the limit dropped were sent under the old limit, so their 429s say nothing new.
A call that was told to wait re-enters at the front of the queue, so waiting never costs it its place.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .errors import ProviderError, RateLimitError

MiB = 1024 * 1024

INITIAL_LIMIT = 16           # generous: ten members at once never queue on a fresh start
# What one in-flight answer costs this process (bot, CPU workers, tmpfs in transit): the benchmark
# measured 56-61 MiB per concurrent 4K image; pixels scale by 4 per step down.
ANSWER_COST = {"4K": 64 * MiB, "2K": 16 * MiB, "1K": 4 * MiB}
OVERLOAD_STATUSES = (429, 503, 529)

# The task that asked (a bot job), seen by the calls it fans out into, for queue positions.
_caller: contextvars.ContextVar[asyncio.Task | None] = contextvars.ContextVar("limiter_caller", default=None)


def answer_cost(resolution: str | None, images: int = 1) -> int:
    return ANSWER_COST.get((resolution or "1K").upper(), ANSWER_COST["1K"]) * max(1, images)


def is_overload(exc: BaseException) -> bool:
    return isinstance(exc, RateLimitError) or (isinstance(exc, ProviderError) and exc.status in OVERLOAD_STATUSES)


def mark_caller() -> None:
    """Record the current task as the owner of the calls made from here (router.generate does it)."""
    if _caller.get() is None:
        _caller.set(asyncio.current_task())


class MemoryBudget:
    """Bytes of answers in flight across every provider. One call bigger than the whole budget still
    runs when nothing else is in flight, rather than never."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.used = 0
        self._limiters: list[AdaptiveLimiter] = []

    def fits(self, cost: int) -> bool:
        return self.used == 0 or self.used + cost <= self.total

    def take(self, cost: int) -> None:
        self.used += cost

    def give(self, cost: int) -> None:
        self.used -= cost
        for limiter in self._limiters:  # memory freed by one provider may start another's calls
            limiter._pump()


class _Waiter:
    __slots__ = ("future", "cost", "owner")

    def __init__(self, future: asyncio.Future, cost: int, owner: asyncio.Task | None) -> None:
        self.future, self.cost, self.owner = future, cost, owner


class AdaptiveLimiter:
    def __init__(self, *, max_limit: int, initial: int = INITIAL_LIMIT,
                 budget: MemoryBudget | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.max_limit = max(1, max_limit)
        self.limit = float(min(self.max_limit, max(1, initial)))
        self.in_flight = 0
        self.overloads = 0  # 429/503s seen, for logs and tests
        self._budget = budget
        self._sleep = sleep
        self._queue: deque[_Waiter] = deque()
        self._pauses = 0  # Retry-After windows open right now
        self._round = 0  # bumped by every decrease
        if budget is not None:
            budget._limiters.append(self)

    def __repr__(self) -> str:
        return (f"AdaptiveLimiter(limit={self.limit:.1f}/{self.max_limit}, in_flight={self.in_flight}, "
                f"waiting={self.waiting}, paused={self._pauses > 0})")

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    def position(self, task: asyncio.Task | None) -> int:
        """1-based place in the queue of the first call `task` (or a call it fanned out) waits with; 0 if none."""
        n = 0
        for w in self._queue:
            if w.future.done():
                continue
            n += 1
            if task is not None and w.owner is task:
                return n
        return 0

    def _can_start(self, cost: int) -> bool:
        return (self._pauses == 0 and self.in_flight < int(self.limit)
                and (self._budget is None or self._budget.fits(cost)))

    def _start(self, cost: int) -> None:
        self.in_flight += 1
        if self._budget is not None:
            self._budget.take(cost)

    def _pump(self) -> None:
        """Start waiting calls in order while there is room; the head of the line is never overtaken."""
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while waiting
                self._queue.popleft()
                continue
            if not self._can_start(head.cost):
                return
            self._queue.popleft()
            self._start(head.cost)
            head.future.set_result(None)

    async def _acquire(self, cost: int, *, front: bool) -> None:
        if not self._queue and self._can_start(cost):
            self._start(cost)
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), cost, _caller.get())
        (self._queue.appendleft if front else self._queue.append)(waiter)
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(cost)  # started just as it was cancelled: give the slot back
            raise

    def _release(self, cost: int) -> None:
        self.in_flight -= 1
        if self._budget is not None:
            self._budget.give(cost)  # pumps every limiter sharing the budget, this one included
        else:
            self._pump()

    @contextlib.asynccontextmanager
    async def call(self, cost: int = 0, *, retry: bool = False) -> AsyncIterator[None]:
        """One upstream attempt. `retry`: the call was already in line (it waited for a Retry-After)."""
        await self._acquire(cost, front=retry)
        started_round = self._round
        try:
            yield
        except BaseException as exc:
            if is_overload(exc):
                self.overloads += 1
                if started_round == self._round:  # once per round: in-flight 429s were sent under the old limit
                    self._round += 1
                    self.limit = max(1.0, self.limit / 2)
            raise
        else:
            self.limit = min(float(self.max_limit), self.limit + 1 / self.limit)
        finally:
            self._release(cost)

    async def pause(self, seconds: float) -> None:
        """The gateway asked for `seconds` of quiet: no call of this provider starts before they pass."""
        self._pauses += 1
        try:
            await self._sleep(seconds)
        finally:
            self._pauses -= 1
            self._pump()
