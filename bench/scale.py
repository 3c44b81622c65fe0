"""`python -m bench --scale [--quick]`: the same /imagine load on one SQLite process (`python bot.py`)
and on a deployment over PostgreSQL (2 `--role gateway` processes, one shard each, and 2
`--role worker` processes), then a worker killed in the middle of a job (issue 11).

The PostgreSQL server is the test bed's (tests/fakes/postgres.py): TEST_DATABASE_URL, or a throwaway
cluster started for the run and stopped after it. Both deployments get the guilds `north` and
`south` (on shards 0 and 1 of 2 for PostgreSQL) and the same calls, alternating between them.
Times are seconds on CLOCK_MONOTONIC unless a name ends in _ms.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.driver import Driver, Interaction, Settings

from .harness import BOT_SETTINGS, DRAFT_PREVIEW, ROOT, GatewayProcess, failed, poll, result_time
from .images import image_path
from .scenarios import _imagine_once, percentile

CHANNELS = ("north/general", "south/general")
HEARTBEAT_SECONDS = 1  # a dead worker's jobs go to another after 3 heartbeats: 3 s


@dataclass(frozen=True)
class ScalePlan:
    calls: int = 20             # sequential /imagine (after one warm-up per guild), 1 s latency
    call_latency: float = 1.0
    burst: int = 50             # /imagine dispatched at once over both guilds, 2 s latency
    burst_latency: float = 2.0
    hold: float = 30.0          # the failover job's first answer is held this long (its worker dies first)


SCALE_PLANS = {"full": ScalePlan(), "quick": ScalePlan(calls=8, burst=20)}


@dataclass
class Deployment:
    """A fake Discord and the bot's processes on it; `driver` is what `_imagine_once` needs."""

    driver: Driver
    workers: list = field(default_factory=list)
    sent: list[Interaction] = field(default_factory=list)  # every /imagine of the run
    users: list[int] = field(default_factory=list)


def _env(gateway: GatewayProcess, workdir: Path, name: str, **extra: Any) -> dict[str, str]:
    return {"DATA_DIR": str(workdir / f"data-{name}"), **BOT_SETTINGS, **gateway.provider_env(),
            **{k: str(v) for k, v in extra.items()}}


@contextlib.asynccontextmanager
async def deployment(gateway: GatewayProcess, workdir: Path, database_url: str | None, users: int):
    """One `python bot.py` on SQLite (`database_url` None), or 2 gateways + 2 workers on PostgreSQL."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(shard_count=2, max_concurrency=1) if database_url else Settings()
    async with Driver(settings=settings, log_dir=workdir) as d:
        dep = Deployment(d, users=[d.alice] + [d.add_user(f"scale{i}") for i in range(users - 1)])
        for i, channel in enumerate(CHANNELS):
            d.add_guild(channel.split("/")[0], shard=(i, 2) if database_url else None)
        host = {"DISCORD_ATTACHMENT_HOSTS": d.cdn_host}
        if database_url is None:
            await d.start_bot([sys.executable, "bot.py"], cwd=ROOT, env=_env(gateway, workdir, "sqlite", **host),
                              timeout=60)
        else:
            pg = {**host, "DATABASE_URL": database_url, "SHARD_COUNT": 2, "HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
                  "SHUTDOWN_GRACE_SECONDS": 2}
            gateway_argv = [sys.executable, "bot.py", "--role", "gateway"]
            await d.start_bot(gateway_argv, cwd=ROOT, env=_env(gateway, workdir, "g0", SHARD_IDS=0, **pg), timeout=60)
            await d.start_another_bot(gateway_argv, cwd=ROOT, env=_env(gateway, workdir, "g1", SHARD_IDS=1, **pg),
                                      timeout=60)
            for i in range(2):
                worker = await d.start_another_bot([sys.executable, "bot.py", "--role", "worker"], cwd=ROOT,
                                                   env=_env(gateway, workdir, f"w{i}", **pg), wait=False)
                await poll(lambda: _ready(worker), 60, "a worker to be ready", interval=0.1)
                dep.workers.append(worker)
        yield dep


def _ready(process) -> bool:
    if not process.running:
        raise RuntimeError(f"worker exited with {process.returncode}; its log:\n{process.output()[-4000:]}")
    return "worker ready" in process.output()


async def measure(gateway: GatewayProcess, dep: Deployment, plan: ScalePlan) -> dict[str, Any]:
    """Scenario 1's sequential calls and scenario 2's burst, on one deployment."""
    d = dep.driver
    await gateway.configure(latency=plan.call_latency, image=image_path("1k"))
    for channel in CHANNELS:  # not counted: first connections, first imports, in every process
        await _imagine_once(dep, gateway, f"warm-up {channel}", channel=channel, sent=dep.sent)
    over = []
    for i in range(plan.calls):
        with contextlib.suppress(TimeoutError, RuntimeError):  # counted as lost at the end
            total, own = await _imagine_once(dep, gateway, f"scale overhead {i}", channel=CHANNELS[i % 2],
                                             sent=dep.sent)
            over.append(total - own)
    parts = split(dep, dep.sent[-plan.calls:], (await gateway.timings())[-plan.calls:])
    await gateway.configure(latency=plan.burst_latency, image=image_path("1k"))
    handles = [await d.slash("imagine", {"prompt": f"scale burst {i}"}, user=dep.users[i % len(dep.users)],
                             channel=CHANNELS[i % 2]) for i in range(plan.burst)]
    dep.sent += handles
    await poll(lambda: all(h.record.acked_at for h in handles), 30, "acknowledgements")
    await settle(dep, handles, 60 + plan.burst)
    acks = [h.ack_latency for h in handles]
    return {"overhead_median_ms": statistics.median(over) * 1000 if over else float("nan"), **parts,
            "ack_p50_ms": percentile(acks, 50) * 1000, "ack_p99_ms": percentile(acks, 99) * 1000,
            "acks_ms": [round(a * 1000) for a in acks]}  # in the order sent (north, south, north, ...)


def split(dep: Deployment, handles: list[Interaction], timings: list[dict[str, Any]]) -> dict[str, float]:
    """Where the sequential calls' overhead goes, medians: INTERACTION_CREATE sent -> acknowledged,
    -> the request at the gateway, and the gateway's answer written -> the result stored."""
    done = [result_time(dep, h) for h in handles]
    if len(timings) != len(handles) or None in done:
        return {}
    ms = lambda values: statistics.median(values) * 1000  # noqa: E731
    return {"ack_seq_median_ms": ms([h.ack_latency for h in handles]),
            "to_provider_median_ms": ms([t["t_start"] - h.dispatched_at for h, t in zip(handles, timings)]),
            "from_provider_median_ms": ms([r - t["t_end"] for r, t in zip(done, timings)])}


async def settle(dep: Deployment, handles: list[Interaction], timeout: float) -> None:
    """Until every job has a result or has failed, or `timeout`; what is missing is counted later."""
    def done() -> bool:
        return all(result_time(dep, h) is not None or failed(dep, h) is not None for h in handles)
    with contextlib.suppress(TimeoutError):
        await poll(done, timeout, "results", interval=0.05)


async def failover(gateway: GatewayProcess, dep: Deployment, database_url: str, plan: ScalePlan,
                   workdir: Path) -> dict[str, Any]:
    """A job held at the provider; SIGKILL the worker running it; seconds until its result is posted
    (the other worker takes it once the dead one's heartbeat lapses, and its call answers at once)."""
    from store import open_store

    await gateway.configure(latency=0.0, image=image_path("1k"), hold_next=plan.hold)
    h = await dep.driver.slash("imagine", {"prompt": "scale failover"}, channel=CHANNELS[0])
    dep.sent.append(h)
    store = await open_store(workdir / "unused.sqlite3", database_url)
    try:
        async def running():
            jobs = await store.jobs_with_status("running")
            return jobs[0] if len(jobs) == 1 else None

        job = None
        deadline = time.monotonic() + 30
        while job is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the failover job never ran")
            job = await running()
            await asyncio.sleep(0.05)
    finally:
        await store.close()

    def holder():
        found = [w for w in dep.workers if f"job_id='{job.id}'" in w.output()]
        return found[0] if len(found) == 1 else None

    victim = await poll(holder, 30, "the worker holding the job", interval=0.05)
    killed = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    await settle(dep, [h], plan.hold - 5)
    posted = result_time(dep, h)
    return {"worker_failover_s": posted - killed if posted is not None else float("nan")}


def count_results(dep: Deployment) -> tuple[int, int]:
    """(interactions without a result, extra results): results are the image uploads ever made to an
    interaction's original response (an upload gets a new attachment id; a kept one keeps its id),
    plus any other message of the bot's with an image in the guilds' channels."""
    world, lost, extra = dep.driver.world, 0, 0
    originals = set()
    for h in dep.sent:
        rec = world.find_message(h.record.original_id or 0)
        uploads = set()
        for version in ([*rec.history, rec.data] if rec is not None else []):
            uploads |= {a["id"] for a in version.get("attachments") or [] if a["filename"] != DRAFT_PREVIEW}
        if rec is not None:
            originals.add(rec.id)
        lost += not uploads or rec.deleted
        extra += max(0, len(uploads) - 1)
    for channel in CHANNELS:
        for m in dep.driver.messages(channel, author="bot"):
            if m.id not in originals and any(a["filename"] != DRAFT_PREVIEW for a in m.data.get("attachments") or []):
                extra += 1
    return lost, extra


async def scale(gateway: GatewayProcess, workdir: Path, plan: ScalePlan) -> dict[str, Any]:
    from tests.fakes.postgres import PostgresServer, create_database, drop_database, wait_until_accepting

    figures: dict[str, Any] = {}
    users = min(plan.burst, 50)
    print("[bench] scale: one SQLite process ...", file=sys.stderr, flush=True)
    async with deployment(gateway, workdir / "sqlite", None, users) as dep:
        for key, value in (await measure(gateway, dep, plan)).items():
            figures[f"sqlite_{key}"] = value
        await asyncio.sleep(1.0)
        figures["sqlite_lost"], figures["sqlite_duplicates"] = count_results(dep)
    print("[bench] scale: 2 gateways + 2 workers on PostgreSQL ...", file=sys.stderr, flush=True)
    server = await asyncio.to_thread(PostgresServer.from_env_or_start)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        await asyncio.to_thread(wait_until_accepting, server.url)
        url = await asyncio.to_thread(create_database, server.url, name)
        try:
            async with deployment(gateway, workdir / "pg", url, users) as dep:
                for key, value in (await measure(gateway, dep, plan)).items():
                    figures[f"pg_{key}"] = value
                figures.update(await failover(gateway, dep, url, plan, workdir / "pg"))
                await asyncio.sleep(1.5)  # time for a duplicate, if there were one
                figures["scale_lost"], figures["scale_duplicates"] = count_results(dep)
                figures["scale_calls"] = len(dep.sent)
        finally:
            await asyncio.to_thread(drop_database, server.url, name)
    finally:
        await asyncio.to_thread(server.stop)
    return figures
