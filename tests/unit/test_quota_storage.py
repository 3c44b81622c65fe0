"""Usage ledger, atomic quota reservations, resets, overrides; and the limits arithmetic."""
from __future__ import annotations

import asyncio
import time

import pytest

from core.limits import FIELDS, Limits, effective_limits, load_role_limits, periods
from fakes.store_race import race
from store import QuotaCheck, QuotaExceeded, UsageEntry, open_store

GUILD, ALICE, BOB = 10, 1, 2


@pytest.fixture
async def storage(store_at):
    store = await open_store(*store_at)
    yield store
    await store.close()


def entry(user=ALICE, images=1, cost=0.134, guild=GUILD) -> UsageEntry:
    return UsageEntry(guild, user, "imagine", "mule", "gemini-3-pro-image-preview", "2K", images, cost)


def member_daily(max_images, user=ALICE) -> QuotaCheck:
    return QuotaCheck("user_daily_images", GUILD, user, since=0, max_images=max_images)


async def test_two_concurrent_admissions_for_the_last_image_exactly_one_passes(storage):
    await storage.reserve_usage(entry(), [member_daily(2)])
    results = await asyncio.gather(*(storage.reserve_usage(entry(), [member_daily(2)]) for _ in range(2)),
                                   return_exceptions=True)
    passed = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(passed) == 1 and len(refused) == 1
    assert refused[0].used.images == 2 and refused[0].check.name == "user_daily_images"


async def test_two_processes_sharing_the_file_cannot_both_take_the_last_unit(store_at):
    """Two connections (as two shard processes would have) race for the quota lock: BEGIN
    IMMEDIATE on one SQLite file, the advisory lock on PostgreSQL."""
    first, second = await open_store(*store_at), await open_store(*store_at)
    try:
        budget = QuotaCheck("guild_monthly_budget", GUILD, None, since=0, max_cost=0.30)
        await first.reserve_usage(entry(cost=0.134), [budget])
        passed = 0
        for _ in range(5):  # several rounds: the interleaving differs run to run
            results = await asyncio.gather(first.reserve_usage(entry(user=ALICE, cost=0.134), [budget]),
                                           second.reserve_usage(entry(user=BOB, cost=0.134), [budget]),
                                           return_exceptions=True)
            # The loser is refused by the quota, not by a locked database.
            assert all(isinstance(r, (int, QuotaExceeded)) for r in results), results
            passed += sum(isinstance(r, int) for r in results)
        assert passed == 1
        use = await first.quota_use(GUILD, None, 0)
        assert use.images == 2 and use.cost == pytest.approx(0.268)
    finally:
        await first.close()
        await second.close()


async def test_two_processes_asking_for_the_last_unit_at_once_only_one_gets_it(store_at):
    path, url = store_at
    await (await open_store(path, url)).close()  # the schema exists before the race
    rounds = 8
    outputs = await race(path, url, "server_quota", rounds=rounds, racers=[(ALICE, GUILD), (BOB, GUILD)])
    for n in range(rounds):
        assert sorted(o[str(n)] for o in outputs) == ["passed", "refused"], (n, outputs)
    store = await open_store(path, url)
    assert (await store.quota_use(GUILD, None, 0)).images == rounds
    await store.close()


async def test_money_budget_refuses_what_does_not_fit(storage):
    budget = QuotaCheck("user_monthly_budget", GUILD, ALICE, since=0, max_cost=0.30)
    await storage.reserve_usage(entry(cost=0.134), [budget])
    await storage.reserve_usage(entry(cost=0.134), [budget])
    with pytest.raises(QuotaExceeded) as info:
        await storage.reserve_usage(entry(cost=0.134), [budget])
    assert info.value.used.cost == pytest.approx(0.268)
    await storage.reserve_usage(entry(cost=0.03), [budget])  # a cheaper image still fits


async def test_release_frees_the_quota_and_charge_records_the_real_cost(storage):
    failed = await storage.reserve_usage(entry(images=2, cost=0.268), [member_daily(2)])
    await storage.release_usage(failed, "refused", job_id="j1")
    kept = await storage.reserve_usage(entry(images=2, cost=0.268), [member_daily(2)])
    await storage.charge_usage(kept, job_id="j2", provider="mule", model="m", resolution="2K", images=1,
                               cost=0.134, output_tokens=1290)
    assert await storage.quota_use(GUILD, ALICE, 0) == await storage.quota_use(GUILD, None, 0)
    use = await storage.quota_use(GUILD, ALICE, 0)
    assert (use.images, use.cost) == (1, 0.134)
    totals = await storage.usage_totals(GUILD, 0, user_id=ALICE)
    assert (totals.images, totals.cost, totals.jobs, totals.not_charged) == (1, 0.134, 1, 1)
    await storage.release_usage(kept, "failed")  # a charged row is never released
    assert (await storage.quota_use(GUILD, ALICE, 0)).images == 1


async def test_reset_counts_only_newer_usage_for_that_member(storage):
    for user in (ALICE, BOB):
        row = await storage.reserve_usage(entry(user=user))
        await storage.charge_usage(row, job_id=None, provider="p", model="m", resolution=None, images=1, cost=0.1)
    await storage.reset_quota(GUILD, ALICE, reset_by=99)
    assert (await storage.quota_use(GUILD, ALICE, 0)).images == 0
    assert (await storage.quota_use(GUILD, BOB, 0)).images == 1
    assert (await storage.quota_use(GUILD, None, 0)).images == 2  # the server's count is not reset
    assert (await storage.usage_totals(GUILD, 0, user_id=ALICE)).images == 1  # reports stay truthful
    assert await storage.top_users(GUILD, 0) == [(ALICE, 1, 0.1), (BOB, 1, 0.1)] or \
        await storage.top_users(GUILD, 0) == [(BOB, 1, 0.1), (ALICE, 1, 0.1)]


async def test_stale_reservations_are_released_at_start(store_at):
    store = await open_store(*store_at)
    await store.reserve_usage(entry())
    await store.close()
    store = await open_store(*store_at)
    assert await store.release_stale_reservations() == 1
    assert (await store.quota_use(GUILD, ALICE, 0)).images == 0
    assert (await store.usage_totals(GUILD, 0)).not_charged == 1
    await store.close()


async def test_overrides_and_member_settings_survive_a_reopen(store_at):
    store = await open_store(*store_at)
    await store.set_limit_override(GUILD, "guild", "user_daily_images", 5, updated_by=ALICE)
    await store.set_limit_override(GUILD, "role:77", "user_daily_images", None)
    await store.set_limit_override(GUILD, "guild", "guild_monthly_budget", 20.0)
    await store.clear_limit_override(GUILD, "guild", "guild_monthly_budget")
    await store.update_member_defaults(ALICE, {"resolution": "2K"})
    await store.close()
    store = await open_store(*store_at)
    assert await store.limit_overrides(GUILD) == {"guild": {"user_daily_images": 5},
                                                  "role:77": {"user_daily_images": None}}
    assert await store.limit_overrides(GUILD + 1) == {}
    assert await store.member_defaults(ALICE) == {"resolution": "2K"}
    assert await store.member_defaults(BOB) == {}
    await store.close()


# -- limits arithmetic ------------------------------------------------------------------------------

def test_server_overrides_then_the_most_generous_role():
    defaults = Limits(user_daily_images=5, user_monthly_budget=2.0, user_max_jobs=3, user_cooldown_seconds=10)
    guild = {"user_daily_images": 3, "guild_daily_images": 100}
    patrons = {"user_daily_images": 50, "user_cooldown_seconds": 0}
    staff = {"user_daily_images": None}
    assert effective_limits(defaults, guild, []) == Limits(3, 2.0, 3, 10, 100, None)
    assert effective_limits(defaults, guild, [patrons]).user_daily_images == 50
    assert effective_limits(defaults, guild, [patrons]).user_cooldown_seconds == 0
    assert effective_limits(defaults, guild, [patrons, staff]).user_daily_images is None
    guests = {"user_daily_images": 1}
    assert effective_limits(defaults, guild, [guests]).user_daily_images == 1  # a role may lower a limit


def test_limit_values_as_admins_write_them():
    images, money, jobs = FIELDS["user_daily_images"], FIELDS["user_monthly_budget"], FIELDS["user_max_jobs"]
    assert images.parse("10") == 10 and images.parse("0") == 0 and images.parse("Unlimited") is None
    assert money.parse("$2.50") == 2.5 and money.show(2.5) == "$2.50" and images.show(None) == "unlimited"
    for field, raw in ((images, "2.5"), (images, "-1"), (jobs, "0"), (money, "lots")):
        with pytest.raises(ValueError):
            field.parse(raw)


def test_role_limits_from_env():
    problems: list[str] = []
    roles = load_role_limits({"ROLE_42_DAILY_IMAGES": "50", "ROLE_42_MONTHLY_BUDGET": "unlimited",
                              "ROLE_7_COOLDOWN_SECONDS": "0", "ROLE_X_DAILY_IMAGES": "1",
                              "ROLE_7_FAVOURITE_COLOUR": "blue"}, problems)
    assert roles == {42: {"user_daily_images": 50, "user_monthly_budget": None}, 7: {"user_cooldown_seconds": 0}}
    assert len(problems) == 2


def test_periods_start_at_midnight_in_the_zone():
    now = 1_700_000_000  # 2023-11-14 22:13:20 UTC
    utc = periods(now)
    assert (utc.day_end - utc.day_start) == 86400 and utc.day_start <= now < utc.day_end
    assert time.gmtime(utc.month_start)[:3] == (2023, 11, 1) and time.gmtime(utc.month_end)[:3] == (2023, 12, 1)
    tokyo = periods(now, "Asia/Tokyo")  # already 07:13 on the 15th there
    assert tokyo.day_start == utc.day_end - 9 * 3600
