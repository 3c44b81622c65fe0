"""CPU-heavy work (JSON and base64 of 20 MB answers, Pillow decoding and re-encoding) off the event
loop, and never more of it at once than the machine has cores to spare.

`asyncio.to_thread` alone moves the work off the loop but not out of its way: ten 4K answers
parsed and re-encoded in six threads keep every core and the GIL busy, and the loop, which needs
both for each socket read and timer, stalled for 300-600 ms in the benchmark (`python -m bench`).
It runs in a pool of its own with `limit()` threads (the cores but one, at least one), apart
from the loop's default executor (DNS lookups, file reads); calls beyond that wait in the pool's
queue, which costs them nothing while the cores are busy anyway, and fewer decoded 4K images sit
in memory at once. The default executor, used by asyncio.to_thread, also starts threads on demand
(up to six here), and each `Thread.start()` blocks the loop until the new thread gets the GIL from
the busy ones; this pool starts at most `limit()` threads, once.
"""
from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def limit() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


def pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=limit(), thread_name_prefix="cpu")
        return _pool


async def run(fn: Callable[..., T], /, *args: Any) -> T:
    """Run `fn(*args)` in the CPU pool and wait for it without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(pool(), fn, *args)
