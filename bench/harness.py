"""What every scenario needs: the gateway process, a fake Discord with the real bot, clocks and probes.

Clocks: the fake Discord stamps interactions and messages with `time.monotonic()`, the gateway
process stamps its answers with `time.monotonic()` and the bot's lag probe writes
`time.monotonic()`: on Linux that is CLOCK_MONOTONIC, one clock for every process on the machine,
so the three can be compared directly.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.driver import Driver, Interaction, Message

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-NOT-A-REAL-KEY-0000"


class GatewayProcess:
    """`python -m bench.gateway` as a child process, configured and read over its admin routes."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self.control: ControlProbe | None = None  # set by the runner: the machine's own lag

    async def start(self) -> GatewayProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self._log = open(self.log_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.gateway", "--port", "0", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=self._log)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line.startswith(b"FAKE_GATEWAY_URL="):
            raise RuntimeError(f"bench.gateway did not start: {line!r}; see {self.log_path}")
        self.url = line.decode().strip().split("=", 1)[1]
        self._session = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()

    async def configure(self, *, latency: float, image: Path, thoughts: bool = False, stream_delay: float = 0.0,
                        rate_limit: tuple[int, float] | None = None, hold_next: float = 0.0) -> int:
        """Set the answer for the next scenario (Gemini answers with `thoughts`: two drafts before the
        image, `stream_delay` s between SSE events, as Nano Banana Pro streams; `hold_next`: the next
        model request alone waits that much longer)."""
        async with self._session.post(f"{self.url}/_bench/reset") as resp:
            resp.raise_for_status()
        async with self._session.post(f"{self.url}/_bench/config", json={
                "latency": latency, "image_path": str(image), "thoughts": thoughts, "stream_delay": stream_delay,
                "rate_limit": rate_limit, "hold_next": hold_next}) as resp:
            resp.raise_for_status()
            return (await resp.json())["image_bytes"]

    async def timings(self) -> list[dict[str, Any]]:
        async with self._session.get(f"{self.url}/_bench/timings") as resp:
            resp.raise_for_status()
            return await resp.json()

    def provider_env(self) -> dict[str, str]:
        """Three providers on this gateway: `mule` (plain JSON), `mulesse` (one SSE line per image) and
        `gempro` (Nano Banana Pro on Gemini's format: streams with its drafts as previews)."""
        env = {"PROVIDERS": "mule,mulesse,gempro"}
        for name, stream in (("MULE", "false"), ("MULESSE", "true")):
            env.update({f"PROVIDER_{name}_PRESET": "mulerun", f"PROVIDER_{name}_API_KEY": API_KEY,
                        f"PROVIDER_{name}_BASE_URL": f"{self.url}/v1", f"PROVIDER_{name}_STREAM": stream,
                        f"PROVIDER_{name}_MAX_RETRIES": "0",
                        # The fake draws 4K images for the mulerun preset's 1K-only model: say it may.
                        f"PROVIDER_{name}_RESOLUTIONS": "1K,2K,4K"})
        env.update({"PROVIDER_GEMPRO_PRESET": "google", "PROVIDER_GEMPRO_API_KEY": API_KEY,
                    "PROVIDER_GEMPRO_BASE_URL": f"{self.url}/v1beta", "PROVIDER_GEMPRO_MODEL": "gemini-3-pro-image-preview",
                    "PROVIDER_GEMPRO_MAX_RETRIES": "0"})
        return env


@dataclass
class BotRun:
    """One fake Discord with one bot process, for one scenario."""

    driver: Driver
    lag_file: Path
    pid: int
    users: list[int] = field(default_factory=list)

    def user(self, i: int) -> int:
        return self.users[i % len(self.users)]

    def lag_max(self, start: float, end: float) -> float:
        """The longest event-loop stall the bot's probe saw between two CLOCK_MONOTONIC times."""
        return lag_max(self.lag_file, start, end)


def lag_max(path: Path | None, start: float, end: float) -> float:
    """The longest lateness a probe file records in a window (0 when none of 1 ms or more)."""
    worst = 0.0
    with contextlib.suppress(FileNotFoundError, TypeError):
        for line in Path(path).read_text().splitlines():
            stamp, _, ms = line.partition(" ")
            # A stall that ends at `stamp` began `ms` earlier: count it if it overlaps the window.
            if ms and float(stamp) >= start and float(stamp) - float(ms) / 1000 <= end:
                worst = max(worst, float(ms))
    return worst


class ControlProbe:
    """`python -m bench.probe`: the same probe in an idle process, to show the machine's own noise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ControlProbe:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.probe", str(self.path),
                                                         cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL)
        return self

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    def max(self, start: float, end: float) -> float:
        return lag_max(self.path, start, end)


# Bot settings for every scenario: queue and per-member limits out of the way (50 and 200 jobs in
# flight are the point), everything else at its default (status line every 3 s, 6 history turns).
BOT_SETTINGS = {"MAX_CONCURRENT_JOBS": "1000", "USER_MAX_JOBS": "1000"}


@contextlib.asynccontextmanager
async def bot_run(gateway: GatewayProcess, workdir: Path, name: str, *, users: int = 1, defaults: bool = False):
    """One bot for one scenario; `defaults`: the bot's own load settings, as an operator gets them."""
    workdir.mkdir(parents=True, exist_ok=True)
    lag_file = workdir / f"lag-{name}.txt"
    async with Driver(log_dir=workdir) as d:
        env = {"DATA_DIR": str(workdir / f"data-{name}"), "DEV_GUILD_ID": str(d.guild_id),
               "DISCORD_ATTACHMENT_HOSTS": d.cdn_host, "LAG_PROBE": "true", "LAG_PROBE_FILE": str(lag_file),
               **({} if defaults else BOT_SETTINGS), **gateway.provider_env()}
        proc = await d.start_bot([sys.executable, "bot.py"], cwd=ROOT, env=env, timeout=60)
        ids = [d.alice] + [d.add_user(f"bench{i}") for i in range(max(0, users - 1))]
        run = BotRun(d, lag_file, proc.pid, ids)
        profiler = await _start_profiler(proc.pid, workdir / f"py-spy-{name}")
        try:
            yield run
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                await profiler.wait()
            (workdir / f"bot-{name}.log").write_text(proc.output())


async def _start_profiler(pid: int, out: Path):
    """BENCH_PYSPY=1: sample the bot with py-spy (`pip install py-spy`) while the scenario runs;
    writes <out>.txt (collapsed stacks, --idle) and <out>.svg is left to `flamegraph.pl` or speedscope."""
    if not os.environ.get("BENCH_PYSPY"):
        return None
    return await asyncio.create_subprocess_exec(
        "py-spy", "record", "--pid", str(pid), "--rate", "250", "--threads", "--idle", "--format", os.environ.get("BENCH_PYSPY_FORMAT", "raw"),
        "--output", f"{out}.txt", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


DRAFT_PREVIEW = "draft-preview.jpg"  # a status message's draft, not a result


def has_image(message: Message) -> bool:
    return any(a["filename"] != DRAFT_PREVIEW for a in message.data.get("attachments") or [])


async def poll(check, timeout: float, what: str, interval: float = 0.02):
    """Poll `check()` until truthy. Results are read from the fake's own timestamps, so polling
    (cheaper than waking one waiter per job on every change) costs no precision."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def result_time(run: BotRun, h: Interaction) -> float | None:
    """When the fake stored the interaction's result (its original response with the image)."""
    rec = run.driver.world.find_message(h.record.original_id or 0)
    if rec is None or rec.deleted or not any(a["filename"] != DRAFT_PREVIEW for a in rec.data.get("attachments") or []):
        return None
    return rec.updated_at


def failed(run: BotRun, h: Interaction) -> str | None:
    """The failure text when the job ended without an image (so a scenario stops early, not at a timeout)."""
    rec = run.driver.world.find_message(h.record.original_id or 0)
    if rec is None or rec.data.get("attachments") or rec.data.get("flags", 0) & 128:
        return None
    content = rec.data.get("content") or ""
    return content if content and not content.startswith(("🎨", "⏳")) else None


async def wait_results(run: BotRun, handles: list[Interaction], timeout: float) -> list[float]:
    done: dict[int, float] = {}

    def check() -> bool:
        for i, h in enumerate(handles):
            if i in done:
                continue
            t = result_time(run, h)
            if t is not None:
                done[i] = t
            elif (why := failed(run, h)) is not None:
                raise RuntimeError(f"a job failed: {why}")
        return len(done) == len(handles)

    await poll(check, timeout, f"{len(handles)} results")
    return [done[i] for i in range(len(handles))]


class RssSampler:
    """Memory of the bot: its process and its children (the CPU worker processes), and the tmpfs
    memory in use (large payloads cross to the workers through files on /dev/shm, which no RSS
    shows). Sampled every `interval` seconds; also each process's own peak (VmHWM, reset first)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int, int]] = []  # (time, bot, workers, tmpfs growth)
        self.pids = [pid]
        self._shmem0 = 0
        self._task: asyncio.Task | None = None

    def status(self, pid: int | None = None) -> dict[str, int]:
        out = {"VmRSS": 0, "VmHWM": 0}
        try:
            with open(f"/proc/{pid or self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":", 1)
                        out[key] = int(value.split()[0]) * 1024
        except FileNotFoundError:  # a worker that exited
            pass
        return out

    def find_children(self) -> list[int]:
        """The bot and every process below it (scans /proc: children files need CONFIG_PROC_CHILDREN)."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        tree, todo = [self.pid], [self.pid]
        while todo:
            parent = todo.pop()
            kids = [p for p, pp in parents.items() if pp == parent]
            tree += kids
            todo += kids
        self.pids = tree
        return tree

    @staticmethod
    def shmem() -> int:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Shmem:"):
                    return int(line.split()[1]) * 1024
        return 0

    def sample(self) -> tuple[float, int, int, int]:
        rss = [self.status(p)["VmRSS"] for p in self.pids]
        return time.monotonic(), rss[0], sum(rss[1:]), max(0, self.shmem() - self._shmem0)

    def baseline(self) -> tuple[int, int]:
        """(RSS of the bot, RSS of the bot and its workers) now; tmpfs growth counts from here."""
        self.find_children()
        self._shmem0 = self.shmem()
        _, bot, workers, _ = self.sample()
        return bot, bot + workers

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0) in every process; False where not allowed."""
        try:
            for pid in self.pids:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            return True
        except OSError:
            return False

    async def _run(self) -> None:
        while True:
            self.samples.append(self.sample())
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peaks(self, hwm_reset: bool) -> dict[str, int]:
        """bot: the bot process alone (max of its samples and its VmHWM), as before worker processes.
        sampled: the highest sample of bot + workers + tmpfs. bound: an upper bound of the same,
        every process's own VmHWM added up (their peaks need not coincide) plus the most tmpfs seen."""
        hwm = [self.status(p)["VmHWM"] if hwm_reset else 0 for p in self.pids]
        tmpfs = max((s[3] for s in self.samples), default=0)
        return {"bot": max([hwm[0]] + [s[1] for s in self.samples]),
                "sampled": max((s[1] + s[2] + s[3] for s in self.samples), default=0),
                "bound": sum(hwm) + tmpfs}
