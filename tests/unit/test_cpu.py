"""core.cpu.CpuPool: the worker processes the bot parses and re-encodes in, and the files that large
payloads cross through (see the module's docstring for why)."""
from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core import cpu as cpu_module
from core.cpu import CpuPool
from providers.errors import RateLimitError, RefusedError
from providers.models import ImageData
from providers.payload import Chunks

ROOT = Path(__file__).resolve().parents[2]
BIG = cpu_module.SPILL_MIN + 12345


# Module-level, so that a worker process can import them by name.
def where() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def echo(value):
    return value


def describe(value) -> tuple[str, int, bytes]:
    return type(value).__name__, len(value), value.head(3) if isinstance(value, Chunks) else value[:3]


def refuse() -> None:
    raise RefusedError(reason="IMAGE_SAFETY", model_text="no", provider="p", status=200, detail="d")


def rate_limited() -> None:
    raise RateLimitError(retry_after=7.5, provider="p")


def die() -> None:
    os._exit(3)


@pytest.fixture
def pool():
    cpu = CpuPool()
    yield cpu
    cpu.shutdown()


@pytest.fixture
def processes(pool):
    pool.start()
    assert pool.has_processes
    return pool


def files_in_transit(cpu: CpuPool) -> list[str]:
    return os.listdir(cpu.spill_dir) if cpu.spill_dir else []


async def test_without_workers_the_heavy_steps_run_in_the_thread_pool(pool):
    assert not pool.has_processes
    pid, thread = await pool.run_process(where)
    assert pid == os.getpid() and thread.startswith("cpu")


async def test_with_workers_they_run_in_another_process(processes):
    cpu = processes
    pid, _ = await cpu.run_process(where)
    assert pid != os.getpid()
    cpu.start()  # idempotent
    assert (await cpu.run_process(where))[0] == pid


async def test_large_images_and_payloads_cross_through_files_that_are_gone_after(processes):
    cpu = processes
    data = os.urandom(BIG)
    img = ImageData(data, "image/png", 10, 20)
    back = await cpu.run_process(echo, img)
    assert back == img and back is not img
    # A long SSE payload arrives as bytes, joined on the way.
    assert await cpu.run_process(describe, Chunks([data[:1000], data[1000:]])) == ("bytes", BIG, data[:3])
    assert await cpu.run_process(describe, Chunks([b"ab", b"c"])) == ("Chunks", 3, b"abc")  # small: pickled
    assert files_in_transit(cpu) == []
    # Only multiprocessing's pickler spills: plain pickle (and copy) leave no file behind.
    assert pickle.loads(pickle.dumps(img)) == img and files_in_transit(cpu) == []


async def test_without_room_on_tmpfs_payloads_are_pickled(processes, monkeypatch):
    monkeypatch.setattr(cpu_module, "_spill_dir", "/nonexistent/for-sure")  # the owner's side: mkstemp fails
    img = ImageData(os.urandom(BIG), "image/png")
    assert await processes.run_process(echo, img) == img


async def test_errors_cross_with_everything_they_carry(processes):
    cpu = processes
    with pytest.raises(RefusedError) as info:
        await cpu.run_process(refuse)
    err = info.value
    assert (err.reason, err.model_text, err.provider, err.status, err.detail) == ("IMAGE_SAFETY", "no", "p", 200, "d")
    with pytest.raises(RateLimitError) as info:
        await cpu.run_process(rate_limited)
    assert info.value.retry_after == 7.5 and "about 8 s" in info.value.user_message


async def test_a_dead_worker_fails_its_call_and_new_workers_take_over(processes):
    cpu = processes
    first, _ = await cpu.run_process(where)
    with pytest.raises(cpu_module.BrokenProcessPool):
        await cpu.run_process(die)
    await cpu.run_process(where)  # in a thread while new workers start
    deadline = time.monotonic() + 30
    while not cpu.has_processes and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    pid, _ = await cpu.run_process(where)
    assert pid not in (os.getpid(), first)


def test_shutdown_removes_the_directory_and_a_dead_owners_directory_is_removed_at_start(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    base = Path(cpu_module._spill_base())
    stale = base / f"{cpu_module._SPILL_PREFIX}{int(gone.stdout)}-test"
    stale.mkdir()
    (stale / "left-over").write_bytes(b"x")
    cpu = CpuPool()
    cpu.start()
    try:
        spill_dir = cpu.spill_dir
        assert spill_dir and Path(spill_dir).is_dir() and not stale.exists()
    finally:
        cpu.shutdown()
    assert not Path(spill_dir).exists() and not cpu.has_processes and cpu_module._spill_dir is None


def test_workers_exit_when_their_owner_is_killed():
    script = textwrap.dedent("""
        import os, signal, sys
        from core.cpu import CpuPool
        cpu = CpuPool()
        cpu.start()
        print(cpu.spill_dir, *cpu._processes._processes, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL
    spill_dir, *pids = out.stdout.split()
    shutil.rmtree(spill_dir)  # left behind by the kill (the next start would remove it)
    workers = [int(pid) for pid in pids]
    assert workers
    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, workers))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; its new parent reaps it when it can
