"""A member's jobs at once and cooldown hold across processes: both are read from the usage
reservations inside the reservation's own transaction (the member's lock), on both backends."""
from __future__ import annotations


import pytest

from fakes.store_race import race
from store import CoolingDown, MemberBusy, UsageEntry, open_store

GUILD, ALICE, BOB = 10, 1, 2


def entry(user=ALICE, guild=GUILD) -> UsageEntry:
    return UsageEntry(guild, user, "imagine", "mule", "m", None, 1, 0.04)


@pytest.fixture
async def two_processes(store_at):
    """Two store handles on the same data, as two bot processes would hold."""
    first, second = await open_store(*store_at), await open_store(*store_at)
    yield first, second
    await first.close()
    await second.close()


async def test_jobs_at_once_count_the_members_reservations_in_every_process(two_processes):
    first, second = two_processes
    one = await first.reserve_usage(entry(), max_active=2)
    await second.reserve_usage(entry(guild=99), max_active=2)  # another server: the same member
    with pytest.raises(MemberBusy) as busy:
        await first.reserve_usage(entry(), max_active=2)
    assert (busy.value.active, busy.value.limit) == (2, 2)
    await second.reserve_usage(entry(user=BOB), max_active=2)  # other members are not held up
    await second.release_usage(one, "failed")  # a job finished elsewhere frees its slot
    await first.reserve_usage(entry(), max_active=2)
    await first.reserve_usage(entry(), max_active=None)  # no limit


async def test_a_charged_job_frees_its_slot(two_processes):
    first, second = two_processes
    usage = await first.reserve_usage(entry(), max_active=1)
    with pytest.raises(MemberBusy):
        await second.reserve_usage(entry(), max_active=1)
    await first.charge_usage(usage, job_id="j1", provider="mule", model="m", resolution=None, images=1, cost=0.04)
    await second.reserve_usage(entry(), max_active=1)


async def test_the_cooldown_runs_from_the_latest_reservation_in_any_process(two_processes):
    first, second = two_processes
    usage = await first.reserve_usage(entry(), cooldown=60)
    with pytest.raises(CoolingDown) as cooling:
        await second.reserve_usage(entry(guild=99), cooldown=60)
    assert 55 < cooling.value.wait <= 60
    await second.release_usage(usage, "failed")  # a failed job still started the cooldown
    with pytest.raises(CoolingDown):
        await second.reserve_usage(entry(), cooldown=60)
    await second.reserve_usage(entry(user=BOB), cooldown=60)
    await second.reserve_usage(entry(), cooldown=0)


async def test_two_processes_asking_for_the_members_last_job_slot_at_once_only_one_gets_it(store_at):
    path, url = store_at
    await (await open_store(path, url)).close()  # the schema exists before the race
    rounds = 6
    # In two servers: the server's quota lock does not serialise them, the member's lock must.
    outputs = await race(path, url, "member_slot", rounds=rounds, racers=[(1, GUILD), (1, GUILD + 1)])
    for n in range(rounds):
        assert sorted(o[str(n)] for o in outputs) == ["passed", "refused"], (n, outputs)
