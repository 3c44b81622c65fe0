"""core.quota.QuotaKeeper: admission (atomic quotas, jobs at once, cooldown, roles), charge, settle."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from core.config import Config
from core.jobs import Options
from core.quota import LimitError, QuotaKeeper
from providers.models import GenerationResult, ImageData
from store import open_store

GUILD = 10


class Router:
    names = ["mule", "ib"]

    def get(self, name):
        model = {"mule": "gemini-2.5-flash-image", "ib": "nanobanana_pro"}[name]
        return SimpleNamespace(config=SimpleNamespace(model=model))


def member(user_id: int, *role_ids: int):
    return SimpleNamespace(id=user_id, roles=[SimpleNamespace(id=r) for r in role_ids])


@pytest.fixture
async def keeper(tmp_path):
    storage = await open_store(tmp_path / "db.sqlite3")

    def make(**settings) -> QuotaKeeper:
        return QuotaKeeper(store=storage, config=Config(discord_token="", providers=[], **settings),
                           providers=Router())
    yield make
    await storage.close()


async def test_two_concurrent_admissions_for_the_last_image_exactly_one_passes(keeper):
    quota = keeper(user_daily_images=1, user_max_jobs=5)
    results = await asyncio.gather(*(quota.admit(member(1), GUILD, "imagine", Options()) for _ in range(2)),
                                   return_exceptions=True)
    assert sum(isinstance(r, LimitError) for r in results) == 1
    error = next(r for r in results if isinstance(r, LimitError))
    assert "used all 1 of your images for today" in str(error) and "<t:" in str(error)


async def test_the_servers_budget_is_shared_by_its_members(keeper):
    quota = keeper(guild_monthly_budget=0.30)
    pro = Options(provider="ib", resolution="4K")  # $0.24 each
    await quota.admit(member(1), GUILD, "imagine", pro)
    with pytest.raises(LimitError, match=r"about \$0.24 and \$0.06 of this server's \$0.30 monthly budget"):
        await quota.admit(member(2), GUILD, "imagine", pro)
    await quota.admit(member(2), 99, "imagine", pro)  # another server has its own budget


async def test_jobs_at_once_hold_for_admissions_at_once_and_a_settled_job_frees_its_slot(keeper):
    quota = keeper(user_max_jobs=1)
    results = await asyncio.gather(*(quota.admit(member(1), GUILD, "imagine", Options()) for _ in range(3)),
                                   return_exceptions=True)
    assert [isinstance(r, LimitError) for r in results].count(False) == 1
    assert "1 images in progress" in str(next(r for r in results if isinstance(r, LimitError)))
    quota.settle(next(r for r in results if not isinstance(r, LimitError)), "released")
    await quota.admit(member(1), GUILD, "imagine", Options())


async def test_cooldown_and_a_refusal_does_not_restart_it(keeper):
    quota = keeper(user_cooldown_seconds=60, user_daily_images=0)
    with pytest.raises(LimitError, match="switched off"):
        await quota.admit(member(1), GUILD, "imagine", Options())
    quota = keeper(user_cooldown_seconds=60)
    await quota.admit(member(1), GUILD, "imagine", Options())
    with pytest.raises(LimitError, match=r"another image in (59|60) s"):
        await quota.admit(member(1), GUILD, "imagine", Options())


async def test_roles_and_server_overrides(keeper):
    quota = keeper(user_daily_images=1, role_limits={7: {"user_daily_images": 3}})
    storage = quota.store
    assert (await quota.limits_for(member(1), GUILD)).user_daily_images == 1
    assert (await quota.limits_for(member(1, 7), GUILD)).user_daily_images == 3
    await storage.set_limit_override(GUILD, "guild", "user_daily_images", 2)
    await storage.set_limit_override(GUILD, "role:7", "user_daily_images", None)
    assert (await quota.limits_for(member(1), GUILD)).user_daily_images == 2
    assert (await quota.limits_for(member(1, 7), GUILD)).user_daily_images is None
    assert (await quota.limits_for(member(1, 7), None)).user_daily_images == 1  # DMs: .env only


async def test_charge_records_the_real_cost_and_settle_releases_the_rest(keeper):
    quota = keeper(user_daily_images=4)
    storage = quota.store
    reservation = await quota.admit(member(1), GUILD, "imagine", Options(count=4))
    assert reservation.estimate == pytest.approx(0.156)
    image = ImageData(b"x", "image/png")
    job = SimpleNamespace(id="j1", reservation=reservation, spec=SimpleNamespace(
        user=member(1), guild_id=GUILD, kind="imagine", conversation=None, options=Options(count=4)))
    await quota.charge(job, GenerationResult(images=[image, image], provider="mule",
                                             model="gemini-2.5-flash-image", usage={"output_tokens": 2580}))
    quota.settle(reservation, "failed", job_id="j1")  # charged: settling only frees the job slot
    await quota.drain()
    assert (await storage.quota_use(GUILD, 1, 0)).images == 2
    failed = await quota.admit(member(1), GUILD, "imagine", Options(count=2))
    quota.settle(failed, "refused")
    await quota.drain()
    totals = await storage.usage_totals(GUILD, 0, user_id=1)
    assert (totals.images, totals.cost, totals.not_charged) == (2, 0.078, 1)


async def test_a_charge_the_database_refused_still_frees_the_members_job_slot(keeper, monkeypatch):
    quota = keeper(user_max_jobs=1)
    reservation = await quota.admit(member(1), GUILD, "imagine", Options())
    job = SimpleNamespace(id="j2", reservation=reservation, spec=SimpleNamespace(
        user=member(1), guild_id=GUILD, kind="imagine", conversation=None, options=Options()))

    async def refused(*args, **kwargs):
        raise ConnectionError("database gone")
    monkeypatch.setattr(quota.store, "charge_usage", refused)
    await quota.charge(job, GenerationResult(images=[ImageData(b"x", "image/png")], provider="mule",
                                             model="gemini-2.5-flash-image"))  # logged, not raised
    quota.settle(reservation, "failed", job_id="j2")
    await quota.admit(member(1), GUILD, "imagine", Options())  # the slot is free again
