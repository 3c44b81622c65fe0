"""IDENTIFY coordinated across processes: Discord lets a bot start one session per
`max_concurrency` bucket (shard_id % max_concurrency) every 5 seconds, whichever machine the
shard runs on. Each IDENTIFY first takes its bucket's lock in the shared database and holds it
SPACING_S after, so the next IDENTIFY of that bucket, in any process, waits its turn.
"""
from __future__ import annotations

import asyncio
import logging

from store import Store

log = logging.getLogger(__name__)

SPACING_S = 5.5  # Discord's 5 s, with room for the IDENTIFY's own trip


class IdentifyGate:
    def __init__(self, store: Store, max_concurrency: int) -> None:
        self.store, self.max_concurrency = store, max(1, max_concurrency)
        self._holds: set[asyncio.Task] = set()

    async def wait_turn(self, shard_id: int) -> None:
        """Return when shard `shard_id` may IDENTIFY; its bucket stays closed SPACING_S from now."""
        acquired = asyncio.get_running_loop().create_future()
        hold = asyncio.create_task(self._hold(f"identify:{shard_id % self.max_concurrency}", acquired))
        self._holds.add(hold)
        hold.add_done_callback(self._holds.discard)
        await asyncio.wait([acquired, hold], return_when=asyncio.FIRST_COMPLETED)
        if not acquired.done():
            hold.result()  # the database failed before the lock was ours: raise that

    async def _hold(self, name: str, acquired: asyncio.Future) -> None:
        async with self.store.exclusive(name):
            acquired.set_result(None)
            await asyncio.sleep(SPACING_S)

    async def close(self) -> None:
        for hold in list(self._holds):
            hold.cancel()
        await asyncio.gather(*self._holds, return_exceptions=True)
