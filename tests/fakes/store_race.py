"""Two processes asking the store for the last unit at the same moment, round after round.

    outputs = await race(sqlite_path, url, "server_quota", rounds=8, racers=[(ALICE, 10), (BOB, 10)])

Each racer is `python -m tests.fakes.store_race` with its own store connection. In round n both
touch a file, wait for the other's, then try `ATTEMPTS[kind]` at once; each prints "n passed" or
"n refused". A race the store does not serialise shows as two passes in one round.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _attempt(kind: str, store, n: int, user: int, guild: int):
    from store import MemberBusy, QuotaCheck, QuotaExceeded, UsageEntry

    entry = UsageEntry(guild, user, "imagine", "p", "m", None, 1, 0.1)
    if kind == "server_quota":  # the server has room for exactly n + 1 images, n of them taken
        check = QuotaCheck("guild_daily_images", guild, None, since=0, max_images=n + 1)
        return store.reserve_usage(entry, [check]), QuotaExceeded
    if kind == "member_slot":  # the member holds n jobs and may hold n + 1
        return store.reserve_usage(entry, max_active=n + 1), MemberBusy
    raise ValueError(kind)


async def race(sqlite_path: Path, url: str | None, kind: str, *, rounds: int,
               racers: list[tuple[int, int]]) -> list[dict[str, str]]:
    """Run the racers ((user, guild) each) through `rounds` rounds; what each printed, by round."""
    barrier = sqlite_path.parent / f"barrier-{kind}"
    barrier.mkdir()
    names = [str(i) for i in range(len(racers))]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.store_race", str(sqlite_path), url or "", str(barrier), kind, me,
        ",".join(n for n in names if n != me), str(user), str(guild), str(rounds), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for me, (user, guild) in zip(names, racers)]
    outputs = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        outputs.append(dict(line.split() for line in out.decode().splitlines()))
    return outputs


async def _main(sqlite_path: str, url: str, barrier: Path, kind: str, me: str, others: str, user: int,
                guild: int, rounds: int) -> None:
    from store import open_store

    store = await open_store(sqlite_path, url or None)
    for n in range(rounds):
        (barrier / f"{me}-{n}").touch()
        while not all((barrier / f"{other}-{n}").exists() for other in others.split(",")):
            await asyncio.sleep(0.002)  # everyone asks at the same moment
        call, refusal = _attempt(kind, store, n, user, guild)
        try:
            await call
            print(n, "passed", flush=True)
        except refusal:
            print(n, "refused", flush=True)
    await store.close()


if __name__ == "__main__":
    path, url, barrier, kind, me, others, user, guild, rounds = sys.argv[1:]
    asyncio.run(_main(path, url, Path(barrier), kind, me, others, int(user), int(guild), int(rounds)))
