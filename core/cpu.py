"""CPU-heavy work (JSON and base64 of 20 MB answers, Pillow decoding and re-encoding) off the event
loop, and never more of it at once than the machine has cores to spare.

`CpuPool` holds two pools, both of `limit()` workers (the cores but one, at least one). The bot
owns one and passes it to whatever needs it (the provider router, image checks, rendering):

- `run(fn, *args)`: threads. For short steps (building a request, checking an attachment).
- `run_process(fn, *args)`: processes, once the owner has called `start()`; threads until then.
  For the steps that take a second of CPU: parsing a 4K answer, re-encoding a 4K image.

Why processes: a thread moves work off the loop but not out of its way. Ten 4K answers parsed and
re-encoded in one thread still stalled the loop 80-240 ms (`python -m bench`), because both share
one GIL: each socket read, write and epoll wait of the loop lets the GIL go, the busy thread takes
it, and the loop waits for the switch interval (5 ms) or for the end of a C call that holds it
(decoding a 23 MB string is one ~40 ms call) to get it back, many times per loop iteration.
py-spy --native showed the loop thread waiting for the GIL for 2 s of a 9 s run.

Crossing to a process has a cost of its own: the pool pickles arguments and results in its own
threads, and pickling or unpickling 20 MB copies it in one call that holds the GIL. On fresh memory
that took 20-95 ms, the loop waiting all along. So an image (ImageData) or a long SSE payload
(payload.Chunks) of SPILL_MIN bytes or more crosses through a file in a private directory on tmpfs
instead: written with os.writev and read back with one os.read, the kernel copying with the GIL
free. The file is deleted as soon as it is read; the directory when the pool shuts down.

Functions given to run_process must be importable by name (module-level) and their arguments,
results and exceptions picklable. Workers ignore SIGINT/SIGTERM (the owner decides when they stop:
`shutdown()`, after its grace period) and exit when their parent process dies. The one piece of
module state is the spill directory the picklers read (`_spill_dir`): pickling hooks are global.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any, Callable, TypeVar

from providers.models import ImageData
from providers.payload import Chunks

T = TypeVar("T")
log = logging.getLogger(__name__)

SPILL_MIN = 1 << 20  # bytes: smaller payloads are pickled as they are (a copy of a few ms at most)
_SPILL_PREFIX = "nano-cpu-"
# Where large payloads cross, read by the pickling hooks below: in the owner while its pool runs
# (set by CpuPool), in a worker from its start. None: they are pickled.
_spill_dir: str | None = None


def limit() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


class CpuPool:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or limit()
        self._threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cpu")
        self._processes: ProcessPoolExecutor | None = None  # set once its workers are up
        self._spill_dir: str | None = None
        self._lock = threading.Lock()  # guards the two above
        self._starting = threading.Lock()  # one start() at a time; shutdown() waits for it

    @property
    def has_processes(self) -> bool:
        return self._processes is not None

    @property
    def spill_dir(self) -> str | None:
        return self._spill_dir

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn(*args)` in the thread pool and wait for it without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def run_process(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn(*args)` in a worker process (in the thread pool until `start()` has finished).

        A worker that dies (killed, out of memory) fails the calls it had; the next call gets a new pool.
        """
        executor = self._processes
        if executor is None:
            return await self.run(fn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            self._replace(executor)
            raise

    def start(self) -> None:
        """Start the worker processes (blocking, about half a second per worker: run it in a thread).
        Until they are up, and if they cannot start, run_process uses the thread pool. Idempotent."""
        global _spill_dir
        with self._starting:
            if self._processes is not None:
                return
            spill_dir = _make_spill_dir()
            executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_worker_init, initargs=(spill_dir,))
            try:
                # Each submit spawns a worker until there are enough: all of them now, not on the loop later.
                pids = sorted({f.result(timeout=60) for f in [executor.submit(os.getpid) for _ in range(self.workers)]})
            except Exception as exc:  # noqa: BLE001 - any failure leaves the work in threads, as before
                log.error("CPU worker processes did not start (%s); CPU-heavy work runs in threads", exc)
                executor.shutdown(wait=False, cancel_futures=True)
                _remove(spill_dir)
                return
            with self._lock:
                self._processes, self._spill_dir = executor, spill_dir
                _spill_dir = spill_dir
        log.info("CPU worker processes %s; large payloads cross through %s", ", ".join(map(str, pids)),
                 spill_dir or "the pool's pipes (no temporary directory)")

    def shutdown(self) -> None:
        """Stop the worker processes (blocking; waits for a start() and for calls in progress). Idempotent."""
        with self._starting, self._lock:
            executor, self._processes = self._processes, None
            spill_dir = self._forget_spill_dir()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        _remove(spill_dir)
        self._threads.shutdown(wait=False)

    def _forget_spill_dir(self) -> str | None:
        global _spill_dir
        spill_dir, self._spill_dir = self._spill_dir, None
        if _spill_dir == spill_dir:
            _spill_dir = None
        return spill_dir

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A worker died: its pool is broken for good. Drop it and start another in the background."""
        with self._lock:
            if self._processes is not broken:
                return
            self._processes = None
            spill_dir = self._forget_spill_dir()
        log.error("a CPU worker process died; starting new ones")
        broken.shutdown(wait=False, cancel_futures=True)

        def restart() -> None:
            _remove(spill_dir)
            self.start()
        threading.Thread(target=restart, name="cpu-restart", daemon=True).start()


def _worker_init(spill_dir: str | None) -> None:
    global _spill_dir
    _spill_dir = spill_dir
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        def orphaned() -> None:
            parent.join()  # returns when the parent is gone, even after SIGKILL
            os._exit(1)
        threading.Thread(target=orphaned, name="parent-watch", daemon=True).start()


# --- large payloads through tmpfs ------------------------------------------------------------

def _make_spill_dir() -> str | None:
    """A private directory on tmpfs (/dev/shm) when there is one, else in the temp directory; the
    directories of owners that died without shutting down are removed first."""
    base = _spill_base()
    for old in Path(base).glob(f"{_SPILL_PREFIX}*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(old.name[len(_SPILL_PREFIX):].split("-")[0])
            if old.stat().st_uid == os.getuid() and not _alive(pid):
                shutil.rmtree(old, ignore_errors=True)
    try:
        return tempfile.mkdtemp(prefix=f"{_SPILL_PREFIX}{os.getpid()}-", dir=base)
    except OSError as exc:
        log.warning("no directory for large payloads (%s): they are pickled", exc)
        return None


def _spill_base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _remove(spill_dir: str | None) -> None:
    if spill_dir:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _park(pieces: list[bytes]) -> str | None:
    """Write the pieces to a new file of the spill directory; None when there is none or it is full."""
    if _spill_dir is None:
        return None
    try:
        fd, path = tempfile.mkstemp(dir=_spill_dir)
    except OSError:
        return None
    try:
        views = [memoryview(p) for p in pieces if len(p)]
        while views:
            written = os.writev(fd, views[:1024])  # IOV_MAX; tmpfs takes everything in one call
            while written and written >= len(views[0]):
                written -= len(views.pop(0))
            if written:
                views[0] = views[0][written:]
        return path
    except OSError:  # tmpfs full (a container's 64 MB /dev/shm): pickle instead
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None
    finally:
        os.close(fd)


def _take(path: str, size: int) -> bytes:
    """The bytes of a parked file, in one read (the kernel fills a new bytes object); deletes it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        parts, left = [], size
        while left:  # one read on tmpfs; a regular file may return less
            part = os.read(fd, left)
            if not part:
                raise EOFError(f"{path}: {size - left} of {size} bytes")
            parts.append(part)
            left -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _image_from_file(path: str, size: int, mime_type: str, width: int | None, height: int | None) -> ImageData:
    return ImageData(_take(path, size), mime_type, width, height)


def _reduce_image(img: ImageData) -> tuple:
    if len(img.data) >= SPILL_MIN and (path := _park([img.data])) is not None:
        return _image_from_file, (path, len(img.data), img.mime_type, img.width, img.height)
    return ImageData, (img.data, img.mime_type, img.width, img.height)


def _reduce_chunks(chunks: Chunks) -> tuple:
    if len(chunks) >= SPILL_MIN and (path := _park(chunks.pieces)) is not None:
        return _take, (path, len(chunks))  # arrives as bytes: joined on the way
    return Chunks, (chunks.pieces,)


# Only the pickler that multiprocessing uses: copy.deepcopy and plain pickle.dumps are unaffected.
ForkingPickler.register(ImageData, _reduce_image)
ForkingPickler.register(Chunks, _reduce_chunks)
