"""providers.limiter: the adaptive per-provider limit (AIMD), Retry-After as a gate, the memory budget;
and the provider layer against a rate-limited fake gateway (3N requests where N per window are allowed)."""
from __future__ import annotations

import asyncio

import pytest

from fakes.gateway_ratelimit import TokenBucket
from fakes.secret_registry import register_secret
from providers.client import ProviderRouter
from providers.errors import RateLimitError, ServerError
from providers.limiter import MiB, AdaptiveLimiter, MemoryBudget, answer_cost
from providers.models import GenerationRequest
from providers.presets import load_provider_configs

KEY = register_secret("sk-limiter-TESTKEY-60318-distinct", "test_limiter.KEY")


class Gate:
    """A sleep the test ends by hand: proves who waits for a Retry-After, without real time."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.over = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.over.wait()


async def run_call(limiter: AdaptiveLimiter, log: list, name: str, hold: asyncio.Event, cost: int = 0,
                   fail: BaseException | None = None) -> None:
    async with limiter.call(cost):
        log.append(name)
        await hold.wait()
        if fail is not None:
            raise fail


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def succeed(limiter: AdaptiveLimiter, times: int = 1) -> None:
    for _ in range(times):
        async with limiter.call():
            pass


async def overload(limiter: AdaptiveLimiter, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        async with limiter.call():
            raise exc


# --- AIMD ------------------------------------------------------------------------------------------

async def test_success_adds_one_slot_per_round_of_successes():
    limiter = AdaptiveLimiter(max_limit=100, initial=4)
    await succeed(limiter, 4)  # 4 successes at limit ~4: about one more slot
    assert 4.9 < limiter.limit < 5.0
    await succeed(limiter, 5)
    assert 5.8 < limiter.limit < 6.0


async def test_overload_halves_the_limit_and_rate_limits_count_as_overload():
    limiter = AdaptiveLimiter(max_limit=100, initial=16)
    await overload(limiter, RateLimitError(status=429))
    assert limiter.limit == 8
    await overload(limiter, ServerError(status=503))
    assert limiter.limit == 4
    await overload(limiter, ServerError(status=500))  # a plain server error says nothing about load
    assert limiter.limit == 4 and limiter.overloads == 2


async def test_calls_in_flight_when_the_limit_dropped_do_not_halve_it_again():
    limiter = AdaptiveLimiter(max_limit=100, initial=16)
    hold, log = asyncio.Event(), []
    tasks = [asyncio.create_task(run_call(limiter, log, str(i), hold, fail=RateLimitError(status=429)))
             for i in range(10)]
    await settle()
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limiter.overloads == 10 and limiter.limit == 8  # one round, one halving
    await overload(limiter, RateLimitError(status=429))  # a call sent under the new limit: halves again
    assert limiter.limit == 4


async def test_limit_stays_between_one_and_the_maximum():
    limiter = AdaptiveLimiter(max_limit=3, initial=16)
    assert limiter.limit == 3
    await succeed(limiter, 20)
    assert limiter.limit == 3
    for _ in range(6):
        await overload(limiter, RateLimitError(status=429))
    assert limiter.limit == 1


# --- bounds ------------------------------------------------------------------------------------------

async def test_never_more_calls_in_flight_than_the_limit_and_the_rest_wait_in_order():
    limiter = AdaptiveLimiter(max_limit=2, initial=2)
    hold, log = asyncio.Event(), []
    tasks = [asyncio.create_task(run_call(limiter, log, str(i), hold)) for i in range(5)]
    await settle()
    assert log == ["0", "1"] and limiter.in_flight == 2 and limiter.waiting == 3
    hold.set()
    await asyncio.gather(*tasks)
    assert log == ["0", "1", "2", "3", "4"] and limiter.in_flight == 0 and limiter.waiting == 0


async def test_memory_budget_shared_by_providers_bounds_images_in_flight():
    budget = MemoryBudget(2 * answer_cost("4K"))
    first, second = AdaptiveLimiter(max_limit=10, budget=budget), AdaptiveLimiter(max_limit=10, budget=budget)
    hold, log = asyncio.Event(), []
    tasks = [asyncio.create_task(run_call(first, log, "a4k", hold, answer_cost("4K"))),
             asyncio.create_task(run_call(second, log, "b4k", hold, answer_cost("4K"))),
             asyncio.create_task(run_call(second, log, "b4k-2", hold, answer_cost("4K"))),
             asyncio.create_task(run_call(first, log, "a1k", hold, answer_cost("1K")))]
    await settle()
    # Two 4K answers fill the budget: the third 4K waits; the 1K behind it in the other provider's
    # line waits for memory too.
    assert log == ["a4k", "b4k"] and budget.used == 2 * answer_cost("4K")
    hold.set()
    await asyncio.gather(*tasks)
    assert sorted(log[2:]) == ["a1k", "b4k-2"] and budget.used == 0


async def test_one_answer_bigger_than_the_budget_runs_alone_rather_than_never():
    budget = MemoryBudget(10 * MiB)
    limiter = AdaptiveLimiter(max_limit=10, budget=budget)
    hold, log = asyncio.Event(), []
    tasks = [asyncio.create_task(run_call(limiter, log, n, hold, answer_cost("4K"))) for n in ("x", "y")]
    await settle()
    assert log == ["x"]
    hold.set()
    await asyncio.gather(*tasks)
    assert log == ["x", "y"]


def test_answer_cost_follows_resolution_and_count():
    assert answer_cost("4K") == 16 * answer_cost("2K") / 4 == 16 * answer_cost("1K")
    assert answer_cost(None) == answer_cost("1K") and answer_cost("2K", 3) == 3 * answer_cost("2K")


# --- Retry-After --------------------------------------------------------------------------------------

async def test_while_a_retry_after_window_is_open_new_calls_wait_instead_of_failing():
    gate = Gate()
    limiter = AdaptiveLimiter(max_limit=10, sleep=gate)
    pause = asyncio.create_task(limiter.pause(7.0))
    hold, log = asyncio.Event(), []
    hold.set()
    newcomer = asyncio.create_task(run_call(limiter, log, "new", hold))
    await settle()
    assert gate.asked == [7.0] and log == [] and limiter.waiting == 1  # waiting, not failed
    gate.over.set()
    await asyncio.gather(pause, newcomer)
    assert log == ["new"]


async def test_a_call_that_waited_for_retry_after_goes_before_newcomers():
    limiter = AdaptiveLimiter(max_limit=1, initial=1)
    hold, log = asyncio.Event(), []
    busy = asyncio.create_task(run_call(limiter, log, "busy", hold))
    await settle()
    newcomer = asyncio.create_task(run_call(limiter, log, "newcomer", hold))

    async def retry():
        async with limiter.call(retry=True):
            log.append("retry")
    retried = asyncio.create_task(retry())
    await settle()
    hold.set()
    await asyncio.gather(busy, retried, newcomer)
    assert log == ["busy", "retry", "newcomer"]


async def test_queue_position_names_the_callers_place_and_skips_cancelled_calls():
    from providers.limiter import mark_caller

    limiter = AdaptiveLimiter(max_limit=1, initial=1)
    hold = asyncio.Event()

    async def job(name: str) -> None:
        mark_caller()
        await asyncio.gather(run_call(limiter, [], name, hold))  # a fanned-out call, as count > 1 makes

    tasks = [asyncio.create_task(job(str(i))) for i in range(4)]
    await settle()
    assert [limiter.position(t) for t in tasks] == [0, 1, 2, 3]
    tasks[1].cancel()
    await settle()
    assert [limiter.position(t) for t in (tasks[2], tasks[3])] == [1, 2] and limiter.waiting == 2
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limiter.in_flight == 0


# --- the provider layer against a rate-limited gateway -----------------------------------------------

async def test_three_times_the_allowed_requests_all_succeed_by_waiting(gw, session):
    allowed, window = 3, 0.6
    gw.rate_limit = TokenBucket(allowed, window)
    env = {"PROVIDERS": "p", **gw.provider_env("p", "mulerun", KEY, MAX_RETRIES=1)}
    router = ProviderRouter(load_provider_configs(env), session)
    results = await asyncio.gather(*(router.generate(GenerationRequest(f"apple {i}")) for i in range(3 * allowed)),
                                   return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["GenerationResult"] * (3 * allowed)
    assert gw.rate_limit.accepted == 3 * allowed and gw.rate_limit.rejected > 0  # it was rate limited, none failed
    limiter = router.get("p").limiter
    assert limiter.overloads == gw.rate_limit.rejected and limiter.limit < 16  # and the limit came down


async def test_a_gateway_that_never_stops_rate_limiting_fails_once_the_patience_is_spent(gw, session):
    gw.rate_limit = TokenBucket(1, 2.0)
    gw.rate_limit.tokens = 0  # no token left: each 429 says "in about 2 s"
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # no real time passes: every hint stays ~2 s
        slept.append(seconds)

    env = {"PROVIDERS": "p", **gw.provider_env("p", "mulerun", KEY, TIMEOUT=5, MAX_RETRIES=2)}
    router = ProviderRouter(load_provider_configs(env), session, sleep=sleep)
    with pytest.raises(RateLimitError):
        await router.generate(GenerationRequest("apple"))
    # Two told waits fit the 5 s an attempt may take; then the two ordinary retries; then it fails.
    assert len(slept) == 4 and all(1.9 < s <= 2.0 for s in slept)


async def test_a_429_with_retry_after_holds_back_the_providers_new_calls_too(gw, session):
    from fakes.fake_gateway import Reply

    gate = Gate()
    env = {"PROVIDERS": "p", **gw.provider_env("p", "mulerun", KEY)}
    router = ProviderRouter(load_provider_configs(env), session, sleep=gate)
    gw.enqueue(Reply(status=429, headers={"Retry-After": "3"}, body={"error": {"message": "slow down"}}))
    first = asyncio.create_task(router.generate(GenerationRequest("first")))
    while not gate.asked:  # the first call got its 429 and waits the 3 s it was told
        await asyncio.sleep(0.01)
    second = asyncio.create_task(router.generate(GenerationRequest("second")))
    while router.get("p").limiter.waiting == 0 and len(gw.requests) < 2:
        await asyncio.sleep(0.01)
    assert len(gw.requests) == 1 and router.queue_position(second) == 1  # the newcomer waits in line
    gate.over.set()
    results = await asyncio.gather(first, second)
    assert gate.asked == [3.0] and len(gw.requests) == 3 and all(r.images for r in results)


def test_max_concurrent_is_read_per_provider_and_bounds_the_limiter():
    from providers.client import ProviderClient

    env = {"PROVIDERS": "p", "PROVIDER_P_PRESET": "mulerun", "PROVIDER_P_API_KEY": KEY, "PROVIDER_P_MAX_CONCURRENT": "3"}
    [config] = load_provider_configs(env)
    assert config.max_concurrent == 3
    assert ProviderClient(config, session=None).limiter.max_limit == 3  # type: ignore[arg-type]
    with pytest.raises(Exception) as info:
        load_provider_configs({**env, "PROVIDER_P_MAX_CONCURRENT": "0"})
    assert "PROVIDER_P_MAX_CONCURRENT" in str(info.value) and ">= 1" in str(info.value)
