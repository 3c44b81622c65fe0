"""The test bed's Discord rate limits (tests/fakes/discord_ratelimits.py): each rule over raw REST, and an
unmodified discord.py bot (tests/fakes/sample_bot.py) pacing itself by the headers so that Discord
never has to refuse it."""
from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from fakes.discord_ratelimits import Limit, RateLimitSettings
from fakes.driver import Driver
from fakes.fixtures import SAMPLE_BOT

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSAGES = "POST /channels/{channel_id}/messages"
THREADS = "POST /channels/{channel_id}/messages/{message_id}/threads"


def bot_session(d: Driver) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bot {d.world.bot_token}"})


async def post_message(http: aiohttp.ClientSession, d: Driver, channel: int, n: int = 0):
    async with http.post(f"{d.fake.api_url}/channels/{channel}/messages", json={"content": f"m{n}"}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_message_create_is_limited_per_channel_with_discords_headers_and_429(tmp_path) -> None:
    async with Driver(log_dir=tmp_path) as d, bot_session(d) as http:
        answers = [await post_message(http, d, d.general, n) for n in range(6)]
        assert [status for status, _, _ in answers] == [200] * 5 + [429]
        first, fifth = answers[0][1], answers[4][1]
        assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"], fifth["X-RateLimit-Remaining"]) == \
            ("5", "4", "0")
        assert 0 < float(first["X-RateLimit-Reset-After"]) <= 5 and float(first["X-RateLimit-Reset"]) > 1e9
        assert first["X-RateLimit-Bucket"] == fifth["X-RateLimit-Bucket"]
        status, headers, body = answers[5]
        assert body["message"] == "You are being rate limited." and body["global"] is False
        assert 0 < body["retry_after"] <= 5 and int(headers["Retry-After"]) >= body["retry_after"]
        assert headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in headers
        # Another channel is another bucket.
        assert (await post_message(http, d, d.art))[0] == 200
        rl = d.fake.ratelimits
        assert (rl.served_429, rl.by_route[MESSAGES], rl.by_scope["user"]) == (1, 1, 1)
        assert len([m for m in d.world.messages.get(d.general, {}).values()]) == 5  # the refused one was not posted


async def test_the_bucket_resets_after_its_window(tmp_path) -> None:
    fast = RateLimitSettings()
    fast.message_create = Limit(2, 0.3)
    async with Driver(log_dir=tmp_path, rate_limits=fast) as d, bot_session(d) as http:
        assert [(await post_message(http, d, d.general, n))[0] for n in range(3)] == [200, 200, 429]
        _, _, refused = await post_message(http, d, d.general)
        await asyncio.sleep(refused["retry_after"] + 0.05)  # what a client is told to wait
        status, headers, _ = await post_message(http, d, d.general)
        assert status == 200 and headers["X-RateLimit-Remaining"] == "1"


async def test_thread_creation_is_limited_per_channel_and_its_429s_are_shared(tmp_path) -> None:
    async with Driver(log_dir=tmp_path) as d, bot_session(d) as http:
        statuses = []
        for n in range(6):
            message = await d.say("general", f"start {n}")
            async with http.post(f"{d.fake.api_url}/channels/{d.general}/messages/{message.id}/threads",
                                 json={"name": f"t{n}"}) as resp:
                statuses.append(resp.status)
                headers, body = dict(resp.headers), await resp.json()
        assert statuses == [200] * 5 + [429]
        assert headers["X-RateLimit-Scope"] == "shared" and body["global"] is False
        assert d.fake.ratelimits.by_route[THREADS] == 1
        assert d.fake.ratelimits.invalid_requests == 0  # a shared 429 is not the bot's fault


async def test_global_limit_of_50_a_second_spares_interaction_endpoints(tmp_path) -> None:
    async with Driver(log_dir=tmp_path) as d, bot_session(d) as http:
        interaction = d.fake.interactions.create(2, {"id": "1", "name": "x", "type": 1}, user_id=d.alice,
                                                 channel_id=d.general)
        statuses = []
        for _ in range(55):  # one route without a bucket of its own: only the global limit applies
            async with http.get(f"{d.fake.api_url}/users/@me") as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    headers, body = dict(resp.headers), await resp.json()
        assert statuses.count(200) == 50 and statuses[50:] == [429] * 5
        assert body["global"] is True and 0 < body["retry_after"] <= 1
        assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
        # The interaction callback is exempt: answered while the bot is globally limited.
        async with aiohttp.ClientSession() as anonymous, anonymous.post(
                f"{d.fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback",
                json={"type": 4, "data": {"content": "still answered"}}) as resp:
            assert resp.status in (200, 204)
        assert d.fake.ratelimits.by_scope["global"] == 5


async def test_invalid_requests_are_counted(tmp_path) -> None:
    async with Driver(log_dir=tmp_path) as d, bot_session(d) as http, aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{d.fake.api_url}/users/@me") as resp:
            assert resp.status == 401
        d.deny("art", "send_messages")
        assert (await post_message(http, d, d.art))[0] == 403
        for n in range(6):
            await post_message(http, d, d.general, n)  # the sixth: a 429 of scope user
        rl = d.fake.ratelimits
        assert rl.invalid_requests == 3 and not rl.banned


async def test_switched_off_nothing_is_limited(tmp_path) -> None:
    async with Driver(log_dir=tmp_path, rate_limits=False) as d, bot_session(d) as http:
        answers = [await post_message(http, d, d.general, n) for n in range(8)]
        assert [s for s, _, _ in answers] == [200] * 8 and "X-RateLimit-Limit" not in answers[0][1]
        assert d.fake.ratelimits.served_429 == 0


async def test_discord_py_paces_itself_by_the_headers(tmp_path) -> None:
    """Seven messages at once in one channel (limit 5 per window), then a thread on each: all arrive,
    and Discord never had to refuse one, because discord.py read the headers and waited."""
    fast = RateLimitSettings()
    fast.message_create = Limit(5, 1.0)
    fast.thread_create = Limit(5, 1.0, scope="shared")
    async with Driver(log_dir=tmp_path, rate_limits=fast) as d:
        await d.start_bot([sys.executable, str(SAMPLE_BOT)])
        mark = d.mark()
        h = await d.slash("burst", {"count": 7, "threads": True})
        done = await h.response(where=lambda m: "done" in m.content, timeout=30)
        assert done.content == "burst of 7 done"
        posted = await d.wait_for_messages("general", 7, lambda m: m.content.startswith("burst "), after=mark)
        assert len({m.id for m in posted}) == 7 and len(d.threads()) == 7
        rl = d.fake.ratelimits
        assert rl.requests_by_route[MESSAGES] == 7 and rl.requests_by_route[THREADS] == 7
        assert rl.served_429 == 0
