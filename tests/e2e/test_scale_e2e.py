"""Several `python bot.py` processes on one PostgreSQL: each holds its shards (SHARD_COUNT,
SHARD_IDS), their IDENTIFYs take turns through the database, a process restarted never touches
another live process's job, and members' limits hold across processes."""
from __future__ import annotations

import asyncio
import sys

from fakes.bot_helpers import (MODEL, TWO_BUCKETS, bot_env, ephemeral_answer, held_answer, one_job_at_a_time_across_shards,
                               result_of)
from fakes.driver import Driver, Settings
from fakes.fake_gateway import FakeGateway, make_png
from store import open_store

BOT = [sys.executable, "bot.py"]


def shard_env(d: Driver, gw: FakeGateway, tmp_path, database_url: str, shard: int, **extra) -> dict[str, str]:
    return bot_env(d, gw, tmp_path / f"data-{shard}", DATABASE_URL=database_url, SHARD_COUNT=2,
                   SHARD_IDS=shard, **extra)


async def start_two_shards(d: Driver, gw: FakeGateway, tmp_path, database_url: str, **extra):
    """Two processes, shard 0 and shard 1 of 2; guilds north (shard 0) and south (shard 1)."""
    d.add_guild("north", shard=(0, 2))
    d.add_guild("south", shard=(1, 2))
    first = await d.start_bot(BOT, env=shard_env(d, gw, tmp_path, database_url, 0, **extra), timeout=60)
    second = await d.start_another_bot(BOT, env=shard_env(d, gw, tmp_path, database_url, 1, **extra), timeout=60)
    return first, second


def rejected_identifies(d: Driver) -> list:
    return [r for r in d.fake.gateway.identify_log if not r.accepted]


async def test_two_processes_with_one_shard_each_serve_imagine_in_guilds_of_both_shards(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=Settings(shard_count=2, max_concurrency=1),
                                           log_dir=tmp_path) as d:
        first, second = await start_two_shards(d, gw, tmp_path, pg_database)
        for channel in ("north/general", "south/general"):
            h = await d.slash("imagine", {"prompt": f"a map of {channel}"}, channel=channel)
            await h.response(where=result_of, timeout=30)
        # Each process's gateway session saw only its own guild's command.
        seen = {s.shard: sorted(p["d"]["channel_id"] for p, _ in s.buffer if p["t"] == "INTERACTION_CREATE")
                for s in d.fake.gateway.sessions.values() if not s.invalid}
        assert seen == {(0, 2): [str(d.channel_id("north/general"))], (1, 2): [str(d.channel_id("south/general"))]}
        accepted = [r.shard for r in d.fake.gateway.identify_log if r.accepted]
        assert sorted(accepted) == [(0, 2), (1, 2)]
        assert rejected_identifies(d) == []  # the second process waited for the first one's turn
        store = await open_store(tmp_path / "unused.sqlite3", pg_database)
        try:
            shards = sorted((p["pid"], p["shard_ids"]) for p in await store.processes())
        finally:
            await store.close()
        assert shards == sorted([(first.pid, "0"), (second.pid, "1")])


async def test_one_process_on_sqlite_with_shard_count_connects_every_shard(tmp_path):
    """SHARD_COUNT without SHARD_IDS: one process holds all shards (discord.py spaces their
    IDENTIFYs itself) and serves the guilds of each."""
    async with FakeGateway() as gw, Driver(settings=Settings(shard_count=2, max_concurrency=1),
                                           log_dir=tmp_path) as d:
        d.add_guild("north", shard=(0, 2))
        d.add_guild("south", shard=(1, 2))
        await d.start_bot(BOT, env=bot_env(d, gw, tmp_path / "data", SHARD_COUNT=2), timeout=60)
        await d.wait(lambda: len([r for r in d.fake.gateway.identify_log if r.accepted]) == 2, 30, "both shards")
        for channel in ("north/general", "south/general"):
            h = await d.slash("imagine", {"prompt": f"a map of {channel}"}, channel=channel)
            await h.response(where=result_of, timeout=30)
        assert sorted(r.shard for r in d.fake.gateway.identify_log if r.accepted) == [(0, 2), (1, 2)]
        assert rejected_identifies(d) == []


async def test_a_process_restarted_never_touches_another_live_process_job(tmp_path, pg_database):
    async with FakeGateway() as gw, Driver(settings=Settings(shard_count=2, max_concurrency=1),
                                           log_dir=tmp_path) as d:
        await start_two_shards(d, gw, tmp_path, pg_database)
        image, release = held_answer(gw, (0, 0, 200))
        slow = await d.slash("imagine", {"prompt": "a slow lighthouse"}, channel="south/general")
        await d.wait(lambda: len(gw.requests) == 1, 30, "the south job at the provider")

        await d.restart_bot(kill=True, timeout=60)  # the north process: SIGKILL, then start again
        quick = await d.slash("imagine", {"prompt": "a quick fox"}, channel="north/general")
        await quick.response(where=result_of, timeout=30)

        store = await open_store(tmp_path / "unused.sqlite3", pg_database)
        try:
            (running,) = await store.jobs_with_status("running")  # the restart left it alone
            release.set()
            result = await slow.response(where=result_of, timeout=30)
            job = await store.job(running.id)
            for _ in range(100):  # the job's outcome is stored just before its result is posted
                if job.status == "done":
                    break
                await asyncio.sleep(0.05)
                job = await store.job(running.id)
        finally:
            await store.close()
        assert result.attachments[0].data == image
        assert job.status == "done" and job.guild_id == d.world.names["guild:south"]
        told = [m.content for m in d.messages("south/general") if "restarted" in (m.content or "")]
        assert told == [] and rejected_identifies(d) == []



async def test_a_members_jobs_at_once_and_cooldown_hold_across_processes(tmp_path, pg_database):
    """Alice may run one job at a time, one a minute: a job running on one process keeps her next one
    out on the other, and once it is done the cooldown it started still holds there. (Daily quotas
    are per server, and a server's events reach one process: the store tests race them.)"""
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        await start_two_shards(d, gw, tmp_path, pg_database, USER_MAX_JOBS=1, USER_COOLDOWN_SECONDS=60)
        await one_job_at_a_time_across_shards(d, gw)

        cooling = await d.slash("imagine", {"prompt": "right after"}, channel="south/general")
        assert "Slow down" in (await ephemeral_answer(cooling)).content
        other = await d.slash("imagine", {"prompt": "bob's turn"}, user="bob", channel="south/general")
        await other.response(where=result_of, timeout=30)
        assert len(gw.requests) == 2


async def test_a_killed_processes_job_is_finished_by_the_other_process_after_its_heartbeat_lapses(tmp_path, pg_database):
    """The process (gateway and worker in one, `--role all`) running north's job is SIGKILLed mid-job
    and not restarted: its heartbeat lapses, the other process's worker runs the job again, and the
    member gets exactly one result, through the interaction's webhook; their quota is charged once."""
    async with FakeGateway() as gw, Driver(settings=TWO_BUCKETS, log_dir=tmp_path) as d:
        first, second = await start_two_shards(d, gw, tmp_path, pg_database, HEARTBEAT_SECONDS=1)  # lapse: 3 s
        held_answer(gw, (200, 0, 0))  # never released: its process dies with it
        gw.image = again = make_png((32, 32), color=(0, 200, 0))
        gw.enqueue(gw.chat_answer(MODEL, stream=False))
        h = await d.slash("imagine", {"prompt": "a doomed comet"}, channel="north/general")
        await d.wait(lambda: len(gw.requests) == 1, 30, "the north job at the provider")
        store = await open_store(tmp_path / "unused.sqlite3", pg_database)
        try:
            (running,) = await store.jobs_with_status("running")
        finally:
            await store.close()
        # Either process's worker may have taken it from the queue: kill that one.
        victim, other = (first, second) if f"job_id='{running.id}'" in first.output() else (second, first)
        await victim.kill()
        result = await h.response(where=result_of, timeout=40)
        assert result.attachments[0].data == again and len(gw.requests) == 2
        await asyncio.sleep(1)  # room for a duplicate, if there were one
        assert len([m for m in d.messages("north/general") if result_of(m)]) == 1
        assert f"job {running.id}: mule" in other.output()
        assert not [m for m in d.messages("north/general") if "restarted" in (m.content or "")]
        store = await open_store(tmp_path / "unused.sqlite3", pg_database)
        try:
            (job,) = await store.jobs_with_status("done")
            usage = await store.usage_totals(d.world.names["guild:north"], 0)
            assert len(await store.processes()) == 1  # the dead one is forgotten
        finally:
            await store.close()
        assert job.options["prompt"] == "a doomed comet" and (usage.images, usage.jobs) == (1, 1)
