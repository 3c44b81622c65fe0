"""Gateway and worker processes on one PostgreSQL (`python bot.py --role gateway|worker`): gateways
hold the shards and enqueue, workers (no gateway connection) run the jobs from procrastinate's queue
and post through Discord's REST API. Two gateways (one shard each) and two workers in every test."""
from __future__ import annotations

import asyncio
import signal
import sys

from fakes.bot_helpers import (TWO_BUCKETS, answer_with, bot_env, ephemeral_answer, held_answer, last_user_text,
                               one_job_at_a_time_across_shards, result_of, thread_id)
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from store import open_store

GATEWAY = [sys.executable, "bot.py", "--role", "gateway"]
WORKER = [sys.executable, "bot.py", "--role", "worker"]


class Deployment:
    def __init__(self, d: Driver, gw: FakeGateway, tmp_path, database_url: str, **extra) -> None:
        self.d, self.gw, self.tmp_path, self.url = d, gw, tmp_path, database_url
        self.extra = {"SHARD_COUNT": 2, "HEARTBEAT_SECONDS": 1, "SHUTDOWN_GRACE_SECONDS": 2, **extra}
        self.gateways: list = []
        self.workers: list = []
        self.started = 0  # workers started, ready or not

    def env(self, name: str, **extra) -> dict[str, str]:
        return bot_env(self.d, self.gw, self.tmp_path / f"data-{name}", DATABASE_URL=self.url, **{**self.extra, **extra})

    async def start(self, workers: int = 2) -> Deployment:
        d = self.d
        d.add_guild("north", shard=(0, 2))
        d.add_guild("south", shard=(1, 2))
        self.gateways.append(await d.start_bot(GATEWAY, env=self.env("g0", SHARD_IDS=0), timeout=60))
        self.gateways.append(await d.start_another_bot(GATEWAY, env=self.env("g1", SHARD_IDS=1), timeout=60))
        await asyncio.gather(*(self.start_worker() for _ in range(workers)))
        return self

    async def start_worker(self):
        env = self.env(f"w{self.started}")
        self.started += 1
        worker = await self.d.start_another_bot(WORKER, env=env, wait=False)
        await _wait_for(lambda: _ready(worker), 60)  # its log is no event of the fake's: poll it
        self.workers.append(worker)
        return worker

    async def store(self):
        return await open_store(self.tmp_path / "unused.sqlite3", self.url)


def _ready(process) -> bool:
    if not process.running:
        raise RuntimeError(f"worker exited with {process.returncode}; its log:\n{process.output()[-4000:]}")
    return "worker ready" in process.output()


def worker_of(deployment: Deployment, job_id: str):
    """The worker process whose log says it ran `job_id`."""
    found = [w for w in deployment.workers if f"job_id='{job_id}'" in w.output()]
    return found[0] if len(found) == 1 else None


async def test_two_gateways_and_two_workers_serve_imagine_in_guilds_of_both_shards(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        dep = await Deployment(d, gw, tmp_path, pg_database).start()
        images = {}
        for channel, color in (("north/general", (200, 0, 0)), ("south/general", (0, 0, 200))):
            images[channel] = answer_with(gw, color)
            h = await d.slash("imagine", {"prompt": f"a map of {channel}"}, channel=channel)
            result = await h.response(where=result_of, timeout=30)
            assert result.attachments[0].data == images[channel]
        # The gateways never called the provider; the workers did, through REST only.
        for process in dep.gateways:
            assert "answered 1 image" not in process.output()
        answered = [w for w in dep.workers if "answered 1 image" in w.output()]
        assert answered, "no worker ran a job"
        # Two gateway connections in all: the workers never IDENTIFY.
        assert sorted(r.shard for r in d.fake.gateway.identify_log) == [(0, 2), (1, 2)]
        store = await dep.store()
        try:
            roles = sorted(p["role"] for p in await store.processes())
            done = await store.jobs_with_status("done")
        finally:
            await store.close()
        assert roles == ["gateway", "gateway", "worker", "worker"]
        assert len(done) == 2 and all(j.message_id for j in done)


async def test_a_threads_five_quick_messages_are_answered_in_order_while_another_thread_runs_on_the_other_worker(
        tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        await Deployment(d, gw, tmp_path, pg_database, USER_MAX_JOBS=10).start()
        threads = []
        for channel in ("north/general", "north/general"):
            answer_with(gw, (9, 9, 9))
            h = await d.slash("imagine", {"prompt": f"start in {channel}"}, channel=channel)
            msg = await h.response(where=result_of, timeout=30)
            threads.append(await d.wait_for_thread(lambda t, m=msg: int(t["id"]) == m.id, timeout=30))
        busy, quick = threads
        # The other thread's turn is held at the provider: a worker is busy with it all along.
        _image, release = held_answer(gw, (1, 2, 3))
        mark = d.mark()
        await d.say(thread_id(busy), "keep this one running")
        await d.wait(lambda: len(gw.requests) == 3, 30, "the long turn at the provider")
        colors = [(40 * i, 200 - 30 * i, 7) for i in range(5)]
        expected = [answer_with(gw, c) for c in colors]
        for i in range(5):
            await d.say(thread_id(quick), f"step {i}")
        # Each turn starts as soon as the one before it ends (the queue's wake-up trigger), not at the
        # workers' next poll (15 s): all five well within one poll.
        results = await d.wait_for_messages(thread_id(quick), 5, result_of, after=mark, timeout=12)
        assert [m.attachments[0].data for m in results] == expected
        # Each turn saw the previous one's answer: they ran one at a time, in order.
        prompts = [r for r in gw.requests[3:] if "step" in str(r.json)]
        assert [next(f"step {i}" for i in range(5) if f"step {i}" in str(r.json["messages"][-1])) for r in prompts] \
            == [f"step {i}" for i in range(5)]
        release.set()
        await d.wait_for_message(thread_id(busy), result_of, after=mark, timeout=30)


async def test_a_button_on_a_result_made_by_the_other_process_works(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        await Deployment(d, gw, tmp_path, pg_database).start()
        answer_with(gw, (5, 50, 5))
        h = await d.slash("imagine", {"prompt": "a green door"}, channel="south/general")
        first = await h.response(where=result_of, timeout=30)
        thread = await d.wait_for_thread(lambda t: int(t["id"]) == first.id, timeout=30)
        again = answer_with(gw, (50, 5, 5))
        mark = d.mark()
        # Made by a worker, pressed in a gateway that never saw the job: the job comes from the database.
        press = await d.click(first, label="Reroll")
        assert "Working on it in" in (await press.response()).content
        rerolled = await d.wait_for_message(thread_id(thread), result_of, after=mark, timeout=30)
        assert rerolled.attachments[0].data == again
        assert last_user_text(gw.requests[-1]).startswith("a green door")


async def job_on_a_worker(dep: Deployment, prompt: str, channel: str):
    """An /imagine whose first answer never comes (the next one comes at once): returns the
    interaction, the running job, the worker running it, and the image the retry gets."""
    d, gw = dep.d, dep.gw
    held_answer(gw, (200, 0, 0))
    again = answer_with(gw, (0, 200, 0))
    h = await d.slash("imagine", {"prompt": prompt}, channel=channel)
    await d.wait(lambda: len(gw.requests) == 1, 30, "the job at the provider")
    store = await dep.store()
    try:
        (job,) = await store.jobs_with_status("running")
    finally:
        await store.close()
    return h, job, await _wait_for(lambda: worker_of(dep, job.id)), again


async def test_a_worker_killed_mid_job_its_job_finishes_on_the_other_worker_once_and_is_charged_once(
        tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        dep = await Deployment(d, gw, tmp_path, pg_database).start()
        h, job, victim, again = await job_on_a_worker(dep, "a doomed comet", "north/general")
        store = await dep.store()
        try:
            victim.proc.send_signal(signal.SIGKILL)
            result = await h.response(where=result_of, timeout=60)
            assert result.attachments[0].data == again
            await asyncio.sleep(1.5)  # time for a duplicate, if there were one
            results = [m for m in d.messages("north/general") if result_of(m)]
            assert len(results) == 1
            done = await store.job(job.id)
            usage = await store.usage_totals(d.world.names["guild:north"], 0)
        finally:
            await store.close()
        survivor = next(w for w in dep.workers if w is not victim)
        assert f"job {job.id}: mule" in survivor.output()
        assert done.status == "done" and done.message_id == result.id
        assert (usage.images, usage.jobs) == (1, 1)
        assert len(gw.requests) == 2


async def _wait_for(check, timeout: float = 30):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError("condition")


async def test_a_worker_stopped_with_sigterm_hands_its_job_back_and_the_other_worker_finishes_it(
        tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        dep = await Deployment(d, gw, tmp_path, pg_database, SHUTDOWN_GRACE_SECONDS=1).start()
        h, job, victim, again = await job_on_a_worker(dep, "a patient heron", "south/general")  # outlasts the grace
        store = await dep.store()
        try:
            assert await victim.stop(timeout=30) == 0  # SIGTERM: a clean exit
            result = await h.response(where=result_of, timeout=30)
            usage = await store.usage_totals(d.world.names["guild:south"], 0)
        finally:
            await store.close()
        assert result.attachments[0].data == again
        assert "handed back" in victim.output()
        assert f"job {job.id}: mule" in next(w for w in dep.workers if w is not victim).output()
        assert (usage.images, usage.jobs) == (1, 1)
        assert len([m for m in d.messages("south/general") if result_of(m)]) == 1


async def test_a_gateway_restarted_never_touches_a_job_in_the_queue_or_on_a_worker(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        await Deployment(d, gw, tmp_path, pg_database).start()
        image, release = held_answer(gw, (0, 90, 90))
        slow = await d.slash("imagine", {"prompt": "a slow lighthouse"}, channel="north/general")
        await d.wait(lambda: len(gw.requests) == 1, 30, "the job at the provider")
        await d.restart_bot(kill=True, timeout=60)  # north's gateway, which took the job: SIGKILL, start again
        await asyncio.sleep(3)  # a few heartbeats of the new process (HEARTBEAT_SECONDS=1)
        answer_with(gw, (1, 1, 1))
        quick = await d.slash("imagine", {"prompt": "a quick fox"}, channel="north/general")
        await quick.response(where=result_of, timeout=30)
        release.set()
        result = await slow.response(where=result_of, timeout=30)
        assert result.attachments[0].data == image
        assert not [m for m in d.messages("north/general") if "restart" in (m.content or "")]
        assert len(gw.requests) == 2  # the slow job ran once


async def test_a_members_jobs_at_once_and_daily_quota_hold_across_gateways_and_workers(tmp_path, pg_database):
    """Reserved by one gateway, charged by a worker, checked by the other gateway."""
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        await Deployment(d, gw, tmp_path, pg_database, USER_MAX_JOBS=1, USER_DAILY_IMAGES=1).start()
        await one_job_at_a_time_across_shards(d, gw)
        spent = await d.slash("imagine", {"prompt": "one more today"}, channel="north/general")
        assert "used all 1" in (await ephemeral_answer(spent)).content
        assert len(gw.requests) == 1


async def test_cancel_on_a_job_running_on_a_worker_stops_it_there(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        dep = await Deployment(d, gw, tmp_path, pg_database).start()
        held_answer(gw, (5, 5, 5))
        h = await d.slash("imagine", {"prompt": "never mind"}, channel="south/general")
        await d.wait(lambda: len(gw.requests) == 1, 30, "the job at the provider")
        status = await h.response(where=lambda m: "Generating" in (m.content or ""), timeout=30)
        await d.click(status, label="Cancel")
        cancelled = await h.response(where=lambda m: m.content == "Cancelled.", timeout=30)
        assert not result_of(cancelled)
        store = await dep.store()
        try:
            (job,) = await store.jobs_with_status("cancelled")
            usage = await store.usage_totals(d.world.names["guild:south"], 0)
        finally:
            await store.close()
        assert (usage.images, usage.not_charged) == (0, 1)
