"""The bot under test as a subprocess, with its output captured to a file and a guaranteed cleanup."""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
from pathlib import Path
from typing import Callable, Sequence

_LIVE_PIDS: set[int] = set()  # bot processes started here and not yet seen exiting


@atexit.register
def _kill_leftovers() -> None:
    """Last line of defence: never leave a bot process behind, even if a test forgot to close."""
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class BotProcess:
    """One run of the bot: a subprocess whose stdout+stderr go to `log_path`."""

    def __init__(self, argv: Sequence[str], cwd: str | Path, env: dict[str, str], log_path: Path,
                 user_env: dict[str, str] | None = None) -> None:
        self.argv, self.cwd, self.env, self.log_path = list(argv), Path(cwd), env, log_path
        self.user_env = dict(user_env or {})  # what the test passed, reused by restart_bot
        self.proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None

    async def start(self, on_exit: Callable[[], None]) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, cwd=self.cwd, env=self.env,
                                                             stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                             stderr=asyncio.subprocess.STDOUT)
        _LIVE_PIDS.add(self.proc.pid)

        async def watch() -> None:
            await self.proc.wait()
            _LIVE_PIDS.discard(self.proc.pid)
            on_exit()
        self._watch = asyncio.create_task(watch())

    pid = property(lambda self: self.proc.pid if self.proc else None)
    returncode = property(lambda self: self.proc.returncode if self.proc else None)
    running = property(lambda self: self.proc is not None and self.proc.returncode is None)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._watch), timeout)
            except asyncio.TimeoutError:
                await self.kill()
        return await self._wait()

    async def kill(self) -> int:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return await self._wait()

    async def _wait(self) -> int:
        if self._watch is not None:
            await asyncio.shield(self._watch)
        return self.returncode if self.returncode is not None else 0
