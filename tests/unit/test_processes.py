"""Processes sharing one database: recovery at start (and on every heartbeat) takes only the jobs
and usage reservations of processes that are gone, never a live process's. Both backends."""
import asyncio
import socket
import subprocess
import sys

from store import JobRecord, UsageEntry, open_store
from store.processes import LAPSE_S


async def hold_a_job(store, job_id: str, user_id: int) -> int:
    """A running job and its usage reservation, owned by `store`'s process."""
    conv = await store.create_conversation(owner_id=user_id, guild_id=5)
    await store.create_job(JobRecord(job_id, "imagine", "running", user_id, 5, 6, None, conv.id, None, None,
                                     {"prompt": job_id}))
    return await store.reserve_usage(UsageEntry(5, user_id, "imagine", "p", "m", None, 1, 0.04))


async def usage_status(store, usage_id: int) -> str:
    return (await store.driver.fetch_one("SELECT status FROM usage WHERE id = ?", (usage_id,)))["status"]


def a_pid_that_ended() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_a_live_process_keeps_its_jobs_and_a_lapsed_ones_are_taken_over(store_at):
    live, lapsed, starting = [await open_store(*store_at) for _ in range(3)]
    try:
        await live.register_process("all", [0], host="machine-a")
        await lapsed.register_process("all", [1], host="machine-b")
        live_usage = await hold_a_job(live, "live1", 1)
        lapsed_usage = await hold_a_job(lapsed, "gone1", 2)
        async with lapsed.driver.transaction() as tx:  # machine-b stopped heartbeating long ago
            await tx.execute("UPDATE processes SET heartbeat_at = heartbeat_at - ? WHERE id = ?",
                             (LAPSE_S + 1, lapsed.process_id))

        await starting.register_process("all", [2], host="machine-c")
        released = await starting.release_stale_reservations()
        taken = await starting.mark_active_jobs("interrupted", "gone")

        assert [j.id for j in taken] == ["gone1"] and released == 1
        assert (await starting.job("live1")).status == "running"
        assert (await starting.job("gone1")).status == "interrupted"
        assert await usage_status(starting, live_usage) == "reserved"
        assert await usage_status(starting, lapsed_usage) == "interrupted"
        assert {p["id"] for p in await starting.processes()} == {live.process_id, starting.process_id}
        assert await live.heartbeat() and not await lapsed.heartbeat()  # the gone one learns it
        assert await lapsed.heartbeat()  # and is back, under the same id
    finally:
        for store in (live, lapsed, starting):
            await store.close()


async def test_a_restart_on_the_same_host_takes_over_at_once_and_old_data_has_no_owner(store_at):
    """A process on this host whose pid no longer runs is gone without waiting for the lapse;
    jobs from before owners existed are anyone's."""
    old, restarted = await open_store(*store_at), await open_store(*store_at)
    try:
        await hold_a_job(old, "ownerless", 3)  # old never registered: no owner
        await old.register_process("all", [0], host=socket.gethostname(), pid=a_pid_that_ended())
        await hold_a_job(old, "killed", 4)  # its heartbeat is fresh, but its pid is gone
        await restarted.register_process("all", [0])
        assert await restarted.release_stale_reservations() == 2
        assert sorted(j.id for j in await restarted.mark_active_jobs("interrupted", "gone")) == ["killed",
                                                                                               "ownerless"]
        await hold_a_job(restarted, "mine", 5)
        assert await restarted.mark_active_jobs("interrupted", "gone") == []  # never its own
    finally:
        await old.close()
        await restarted.close()


async def test_two_processes_recovering_at_once_take_each_job_once(store_at):
    gone, first, second = [await open_store(*store_at) for _ in range(3)]
    try:
        await gone.register_process("all", host="machine-x")
        for n in range(5):
            await hold_a_job(gone, f"j{n}", n)
        await gone.unregister_process()  # a clean stop leaves them to anyone at once
        await first.register_process("all", host="machine-y")
        await second.register_process("all", host="machine-z")
        a, b = await asyncio.gather(first.mark_active_jobs("interrupted", "gone"),
                                    second.mark_active_jobs("interrupted", "gone"))
        assert sorted(j.id for j in a + b) == [f"j{n}" for n in range(5)]
        assert not ({j.id for j in a} & {j.id for j in b})
    finally:
        for store in (gone, first, second):
            await store.close()


async def test_a_database_from_before_owners_is_migrated_and_its_running_jobs_recovered(store_at):
    """A version-1 database (no processes table, no owner columns) with a job left running: the
    next start adds migration 2 and takes that job over."""
    from store import schema
    from store.sql import SqlStore

    path, url = store_at
    if url is None:
        from store.sqlite import SqliteDriver
        driver = await SqliteDriver.open(path)
    else:
        from store.postgres import PostgresDriver
        driver = await PostgresDriver.open(url)
    async with driver.transaction() as tx:
        await tx.execute(schema.MIGRATIONS_TABLE)
        for statement in schema.statements(1, serial=driver.serial_primary_key, blob=driver.blob):
            await tx.execute(statement)
        await tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)")
        await tx.execute("INSERT INTO jobs (id, kind, status, user_id, created_at, updated_at)"
                         " VALUES ('v1job', 'imagine', 'running', 7, 0, 0)")
    await SqlStore(driver).close()

    store = await open_store(path, url)
    try:
        await store.register_process("all")
        assert [j.id for j in await store.mark_active_jobs("interrupted", "gone")] == ["v1job"]
    finally:
        await store.close()
