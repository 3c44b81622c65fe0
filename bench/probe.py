"""The control for the lag probe: `python -m bench.probe FILE` runs the bot's probe loop (a 10 ms
timer, every lateness of 1 ms or more appended to FILE as `<CLOCK_MONOTONIC s> <ms>`) in an idle
process of its own. Whatever it sees is the machine's scheduling noise (other processes on the same
cores: the fakes, other people's tests), not the bot's; the report shows both side by side."""
from __future__ import annotations

import asyncio
import sys
import time


async def probe(path: str) -> None:
    with open(path, "a", buffering=1) as out:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            now = time.monotonic()
            late_ms = (now - start - 0.01) * 1000
            if late_ms >= 1:
                out.write(f"{now:.4f} {late_ms:.1f}\n")


if __name__ == "__main__":
    try:
        asyncio.run(probe(sys.argv[1]))
    except KeyboardInterrupt:
        pass
