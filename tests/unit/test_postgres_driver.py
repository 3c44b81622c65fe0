"""store/postgres.py against a real PostgreSQL server (the session's throwaway cluster, see
tests/fakes/postgres.py): placeholders, transactions, advisory locks across connections and
processes, bytes, and a clear error without the password when the server is away."""
from __future__ import annotations

import asyncio
import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from fakes.secret_registry import register_secret
from store.postgres import PostgresDriver, translate

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = register_secret("pg-pass-7c1e93b2", "test_postgres_driver.PASSWORD")
# Time between a transaction's read and its write, so that unlocked transactions would interleave.
RACE_WINDOW_S = 0.02


@pytest.fixture
async def driver(pg_database):
    db = await PostgresDriver.open(pg_database, max_size=4)
    try:
        yield db
    finally:
        await db.close()


def test_placeholders_become_psycopg_ones_and_percent_signs_are_escaped():
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x%' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%' AND d = %s")
    # A question mark inside a literal or a quoted identifier is text, not a placeholder.
    assert translate("""SELECT '?' AS "what?" , ?""") == """SELECT '?' AS "what?" , %s"""
    # So is one in a comment, and an apostrophe there starts no literal.
    assert translate("SELECT ? -- the member's? 5%\n, ? /* it's? */") == (
        "SELECT %s -- the member's? 5%%\n, %s /* it's? */")


async def test_placeholders_literals_and_percent_signs_reach_the_server_intact(driver):
    row = await driver.fetch_one("SELECT '?' AS q, 'it''s 100%' AS pct, ? AS p, ? || '%' AS s",
                                 (7, "50"))
    assert row == {"q": "?", "pct": "it's 100%", "p": 7, "s": "50%"}


async def test_a_transaction_commits_everything_or_nothing(driver):
    async with driver.transaction() as tx:
        await tx.execute(f"CREATE TABLE t (id {driver.serial_primary_key}, name TEXT NOT NULL)")
        await tx.execute_many("INSERT INTO t (name) VALUES (?)", [("a",), ("b",)])
    with pytest.raises(RuntimeError):
        async with driver.transaction() as tx:
            assert await tx.execute("UPDATE t SET name = ? WHERE name = ?", ("z", "a")) == 1
            await tx.execute("INSERT INTO t (name) VALUES (?)", ("c",))
            raise RuntimeError("the caller fails halfway")
    assert await driver.fetch_all("SELECT name FROM t ORDER BY id") == [{"name": "a"}, {"name": "b"}]


async def test_returning_gives_the_new_ids(driver):
    async with driver.transaction() as tx:
        await tx.execute(f"CREATE TABLE t (id {driver.serial_primary_key}, name TEXT)")
        first = await tx.fetch_one("INSERT INTO t (name) VALUES (?) RETURNING id", ("a",))
        second = await tx.fetch_one("INSERT INTO t (name) VALUES (?) RETURNING id", ("b",))
    assert (first["id"], second["id"]) == (1, 2)
    assert await driver.fetch_one("SELECT name FROM t WHERE id = ?", (2,)) == {"name": "b"}
    assert await driver.fetch_one("SELECT name FROM t WHERE id = ?", (3,)) is None


async def test_bytes_round_trip_unchanged(driver):
    payload = bytes(range(256)) * 4 + os.urandom(1 << 20) + b"\x00"
    async with driver.transaction() as tx:
        await tx.execute(f"CREATE TABLE files (id {driver.serial_primary_key}, data {driver.blob})")
        await tx.execute("INSERT INTO files (data) VALUES (?)", (payload,))
    row = await driver.fetch_one("SELECT data FROM files")
    assert type(row["data"]) is bytes and row["data"] == payload


async def _create_counter(driver) -> None:
    async with driver.transaction() as tx:
        await tx.execute("CREATE TABLE counter (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        await tx.execute("INSERT INTO counter VALUES ('n', 0)")


async def _increment(driver, lock: str | None) -> None:
    """Read, wait, write: without the lock two of these lose an update."""
    async with driver.transaction(lock=lock) as tx:
        row = await tx.fetch_one("SELECT value FROM counter WHERE name = 'n'")
        await asyncio.sleep(RACE_WINDOW_S)
        await tx.execute("UPDATE counter SET value = ? WHERE name = 'n'", (row["value"] + 1,))


async def test_the_named_lock_serialises_transactions_on_different_connections(driver):
    await _create_counter(driver)
    await asyncio.gather(*(_increment(driver, "counter:n") for _ in range(12)))
    assert (await driver.fetch_one("SELECT value FROM counter"))["value"] == 12


async def test_a_second_transaction_waits_for_the_lock_and_another_name_does_not(driver):
    holding, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first():
        async with driver.transaction(lock="quota:1"):
            holding.set()
            await release.wait()
            order.append("first done")

    async def second(name: str):
        await holding.wait()
        async with driver.transaction(lock=name):
            order.append(f"{name} in")

    task = asyncio.create_task(first())
    await holding.wait()
    # Another name is not blocked by the held one.
    await asyncio.wait_for(second("quota:2"), 10)
    waiter = asyncio.create_task(second("quota:1"))
    # Wait until the server shows the second transaction waiting on an advisory lock.
    for _ in range(500):
        waiting = await driver.fetch_one(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        if waiting["n"]:
            break
        await asyncio.sleep(0.02)
    assert waiting["n"] == 1 and order == ["quota:2 in"]
    release.set()
    await asyncio.wait_for(asyncio.gather(task, waiter), 10)
    assert order == ["quota:2 in", "first done", "quota:1 in"]


async def test_the_lock_is_released_when_the_transaction_rolls_back(driver):
    with pytest.raises(ValueError):
        async with driver.transaction(lock="job:1"):
            raise ValueError("rolled back")
    async with asyncio.timeout(10):
        async with driver.transaction(lock="job:1") as tx:
            assert await tx.fetch_one("SELECT 1 AS one") == {"one": 1}


INCREMENTER = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, sys.argv[1])
    from store.postgres import PostgresDriver

    async def main(url, lock, times, window):
        db = await PostgresDriver.open(url, max_size=1)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO ready DEFAULT VALUES")
        while (await db.fetch_one("SELECT count(*) AS n FROM ready"))["n"] < 2:
            await asyncio.sleep(0.01)   # start together with the other process
        for _ in range(times):
            async with db.transaction(lock=lock or None) as tx:
                row = await tx.fetch_one("SELECT value FROM counter WHERE name = 'n'")
                await asyncio.sleep(window)
                await tx.execute("UPDATE counter SET value = ? WHERE name = 'n'", (row["value"] + 1,))
        await db.close()

    asyncio.run(main(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
""")


async def test_the_named_lock_serialises_transactions_of_two_processes(driver, pg_database):
    await _create_counter(driver)
    async with driver.transaction() as tx:
        await tx.execute("CREATE TABLE ready (id BIGINT GENERATED ALWAYS AS IDENTITY)")
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", INCREMENTER, str(ROOT), pg_database, "counter:n", "10",
        str(RACE_WINDOW_S), stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    assert (await driver.fetch_one("SELECT value FROM counter"))["value"] == 20


async def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:{port}/bot"
    with pytest.raises(ConnectionError) as raised:
        await PostgresDriver.open(url, timeout=1)
    assert f"bot@127.0.0.1:{port}" in str(raised.value)
    assert PASSWORD not in str(raised.value)
