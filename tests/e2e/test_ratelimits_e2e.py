"""Rate limits on both sides, through `python bot.py`: a gateway that answers 429 beyond N requests a
window (the bot waits and every image arrives), and Discord's own limits in the fake Discord (50
/imagine in one channel: every result delivered, none held back by thread creation)."""
from __future__ import annotations

import asyncio
import sys

import pytest
import pytest_asyncio

from fakes.bot_helpers import bot_env, result_of, start_in_thread
from fakes.discord_ratelimits import Limit, RateLimitSettings
from fakes.driver import Driver
from fakes.fake_gateway import FakeGateway
from fakes.gateway_ratelimit import TokenBucket

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Discord's limits as the fake has them by default, but thread creation in a channel takes 5 per 2 s
# instead of 5 per 5 s, so that waiting for all fifty threads stays short.
def final(msg) -> bool:
    """The result or a failure: no longer a status line."""
    return not msg.content.startswith(("⏳", "🎨"))


DISCORD = RateLimitSettings(thread_create=Limit(5, 2.0, scope="shared"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ratelimits")
    async with FakeGateway(image_size=(48, 32)) as gw, Driver(log_dir=tmp, rate_limits=DISCORD) as d:
        # The bot's own defaults for concurrency: the provider's adaptive limit and MAX_CONCURRENT_JOBS.
        await d.start_bot([sys.executable, "bot.py"], env=bot_env(d, gw, tmp / "data", USER_MAX_JOBS=20))
        yield d, gw


async def test_a_429_storm_backs_off_and_recovers(world):
    d, gw = world
    allowed = 3
    gw.rate_limit = TokenBucket(allowed, 1.0)  # 3 a second; nine members ask at once
    try:
        users = [d.add_user(f"storm{n}") for n in range(3 * allowed)]
        handles = await asyncio.gather(*[d.slash("imagine", {"prompt": f"storm {n}"}, user=user)
                                         for n, user in enumerate(users)])
        results = await asyncio.gather(*[h.response(where=final, timeout=60) for h in handles])
        storm = gw.rate_limit
    finally:
        gw.rate_limit = None
    # Every member got the image; the gateway did refuse some calls: the bot waited them out.
    assert [r.content.split("**")[1] for r in results] == [f"storm {n}" for n in range(3 * allowed)]
    assert all(r.attachments[0].data == gw.image for r in results)
    assert storm.rejected > 0 and storm.accepted == 3 * allowed
    # Recovered: with the limit lifted, the next ones go straight through, none refused.
    before = len(gw.requests)
    handles = await asyncio.gather(*[d.slash("imagine", {"prompt": f"after {n}"}, user=users[n]) for n in range(3)])
    after = await asyncio.gather(*[h.response(where=result_of, timeout=30) for h in handles])
    assert all(r.attachments for r in after) and len(gw.requests) - before == 3


async def test_fifty_imagine_in_one_channel_with_discords_limits_all_deliver_none_lost(world):
    d, gw = world
    users = [d.add_user(f"crowd{n}") for n in range(50)]
    threads_before = len(d.threads())
    gw.latency = 0.3
    try:
        handles = await asyncio.gather(*[d.slash("imagine", {"prompt": f"crowd {n}"}, user=user, channel="general")
                                         for n, user in enumerate(users)])
        results = await asyncio.gather(*[h.response(where=result_of, timeout=90) for h in handles])
    finally:
        gw.latency = 0.0
    threads_when_delivered = len(d.threads()) - threads_before
    assert all(h.ack_latency < 3 for h in handles)
    assert [r.content.split("**")[1] for r in results] == [f"crowd {n}" for n in range(50)]
    assert all(r.attachments[0].data == gw.image for r in results)
    # Fifty threads at Discord's pace take at least 18 s in this channel; the results did not wait
    # for them: they were all delivered while most threads were still to come.
    assert threads_when_delivered <= 25
    ids = {r.id for r in results}
    await d.wait(lambda: ids <= {int(t["id"]) for t in d.threads()}, 90, "a thread on every result")
    notes = [f for h in handles for f in h.followups if "could not start a thread" in f.content]
    assert notes == []
    # Status lines leave room for the result in each interaction's edits (5 per 2 s): one status edit per
    # 1.5 s at most, so the result never queues behind them; Discord never had to refuse one.
    for h in handles:
        token = d.fake.interactions.records[h.id].token
        status_edits = [r.at for r in d.requests if token in r.path and r.method == "PATCH" and not r.files]
        assert all(b - a >= 1.45 for a, b in zip(status_edits, status_edits[1:])), status_edits
    assert [r for r in d.fake.ratelimits.refusals if "/webhooks/" in r[1]] == []


async def test_turns_waiting_in_a_thread_do_not_spend_the_channels_edits(world):
    d, gw = world
    _, thread = await start_in_thread(d, "a queue of turns")
    mark = d.mark()
    gw.latency = 1.0  # the last turn waits about 3 s for the three before it
    try:
        for n in range(4):
            await d.say(thread, f"turn {n} please")
        answers = await d.wait_for_messages(thread, 4, result_of, after=mark, timeout=60)
    finally:
        gw.latency = 0.0
    assert [a.content.split("**")[1] for a in answers] == [f"turn {n} please" for n in range(4)]
    # A status line is edited only when it changes: waiting turns, whose line stays the same, do not
    # use up the thread's 5 edits per 5 s that the running turn's result needs.
    for answer in answers:
        versions = [v["content"] for v in answer.record.history]
        assert all(a != b for a, b in zip(versions, versions[1:])), versions
